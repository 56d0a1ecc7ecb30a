"""Waiting for the runtime's answer to one control request (``tt:<town>:reply:<id>``).

The answer is popped with BLPOP on a connection of its own. BLPOP is not idempotent: if
the connection drops after the answer was popped, the answer is gone; the wait then
raises :class:`~tinytown.errors.ReplyLostError` (the request may or may not have been
carried out) rather than waiting for an answer that cannot come.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from tinytown.store.records import Store

#: ``wait(request_id, seconds)``: the raw answer, or None when none came in time.
ReplyWait = Callable[[str, float], Awaitable[str | None]]


@contextlib.asynccontextmanager
async def reply_waiter(store: Store) -> AsyncIterator[ReplyWait]:
    """A blocking wait for control answers on a connection of its own (closed on exit).

    The yielded ``wait(request_id, seconds)`` returns the answer's raw JSON as soon as it
    is pushed, or None after ``seconds`` (rounded to milliseconds; at least 1 ms). Raises
    RedisUnavailableError when the connection fails (ReplyLostError once BLPOP was sent).
    Cancellable: the connection is then discarded; an answer it may have popped is lost,
    which only matters to the cancelled requester.
    """
    async with store.redis.dedicated() as conn:

        async def wait(request_id: str, seconds: float) -> str | None:
            reply = await conn.execute(
                "BLPOP", store.keys.reply(request_id), f"{max(seconds, 0.001):.3f}"
            )
            return None if reply is None else reply[1]

        yield wait
