"""The town's event stream (``tt:<town>:events``): recent events, pages, and following.

Every read here is idempotent (XREVRANGE, XRANGE, XREAD from a given id), so the client
retries them after a lost reply. Following resumes from the last id it yielded after a
dropped connection or a Redis restart: no event is yielded twice, and none is skipped
that is still in the stream (the stream is capped, see ``EVENTS_MAXLEN``; ids come from
the server's clock, so entries added after a restart that turned the clock back would
sort before the last id seen and are not yielded).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import attrs

from tinytown.errors import RedisUnavailableError
from tinytown.store.client import Link, Redis

#: Entries read per XREAD / XRANGE.
PAGE = 500
#: How long one XREAD blocks before it is issued again (a long block holds no resource).
BLOCK_MS = 30_000
#: ``wait(after, block_ms)``: the newest event id once one is newer than ``after``.
EventWait = Callable[[str, int], Awaitable[str]]
#: Backoff between reconnection attempts of a follower.
RETRY_MIN = 0.05
RETRY_MAX = 2.0


@attrs.frozen
class Event:
    """One entry of the town's event stream."""

    id: str
    fields: dict[str, str]

    @property
    def kind(self) -> str:
        return self.fields.get("kind", "")

    @property
    def agent(self) -> str | None:
        return self.fields.get("agent")

    @property
    def text(self) -> str:
        return self.fields.get("text", "")

    @property
    def at(self) -> str:
        return self.fields.get("at", "")


def _event(entry_id: str, flat: list[str] | dict[str, str]) -> Event:
    fields = flat if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=True))
    return Event(entry_id, fields)


class EventStream:
    """Named reads of one town's event stream."""

    def __init__(self, redis: Redis, key: str) -> None:
        self.redis = redis
        self.key = key

    async def last_id(self) -> str:
        """The id of the newest event, or ``0-0`` when the stream is empty. Cancellable."""
        reply = await self.redis.execute("XREVRANGE", self.key, "+", "-", "COUNT", 1)
        return reply[0][0] if reply else "0-0"

    async def after(self, after: str, count: int = PAGE) -> list[Event]:
        """Up to ``count`` events strictly after the id ``after``, oldest first. Cancellable."""
        batch = await self.redis.execute("XRANGE", self.key, "(" + after, "+", "COUNT", count)
        return [_event(entry_id, flat) for entry_id, flat in batch]

    async def recent(self, count: int = 20, *, agent: str | None = None) -> list[Event]:
        """The newest ``count`` events (optionally only those of ``agent``), oldest first.

        Cancellable (reads only)."""
        out: list[Event] = []
        cursor = "+"
        while len(out) < count:
            batch = await self.redis.execute(
                "XREVRANGE", self.key, cursor, "-", "COUNT", max(count * 4, 100)
            )
            if not batch:
                break
            for entry_id, flat in batch:
                event = _event(entry_id, flat)
                if agent is None or event.agent == agent:
                    out.append(event)
            cursor = "(" + batch[-1][0]
        return list(reversed(out[:count]))

    @contextlib.asynccontextmanager
    async def waiter(self) -> AsyncIterator[EventWait]:
        """A blocking wait for new events on a connection of its own (closed on exit).

        The yielded ``wait(after, block_ms)`` blocks until an event newer than ``after``
        arrives or ``block_ms`` pass, and returns the newest id seen (``after`` if none).
        For waiting on *something* to happen (``tt wait``, ``tt run --detach``); to read
        the events themselves, use :meth:`follow`. Cancellable: the connection is then
        discarded.
        """
        async with self.redis.dedicated() as conn:

            async def wait(after: str, block_ms: int) -> str:
                reply = await conn.execute("XREAD", "BLOCK", block_ms, "STREAMS", self.key, after)
                return reply[0][1][-1][0] if reply else after

            yield wait

    async def follow(
        self,
        since: str = "$",
        *,
        reconnect: bool = True,
        block_ms: int = BLOCK_MS,
        pace: Callable[[], float] | None = None,
    ) -> AsyncIterator[Event]:
        """Events after the id ``since`` (``$``: from now on), as they are added.

        Blocks on XREAD on a connection of its own (no polling). With ``reconnect`` (the
        default: a follower is long-lived by nature, even in a one-shot ``tt events
        --follow``), a dropped connection or a Redis restart is ridden out: it reconnects
        with backoff (50 ms doubling to 2 s, for as long as it takes) and resumes from the
        last id yielded, so no event is yielded twice and none still in the stream is
        missed. Without it, :class:`RedisUnavailableError` ends the iteration.

        ``pace``: seconds to wait before each read after one that returned events (asked
        each time; 0 = none): a follower that needs no promptness reads what accumulated
        in one round trip instead of one per event burst. Nothing is skipped either way.

        Cancellable at any point (while blocked, reconnecting or yielding); the
        connection is closed.
        """
        import trio  # following is long-lived: it always runs under trio

        last = since
        delay = RETRY_MIN
        while True:
            try:
                async with self.redis.dedicated() as conn:
                    if last == "$":
                        last = await _last_id(conn, self.key)
                    while True:
                        reply = await conn.execute(
                            "XREAD", "BLOCK", block_ms, "COUNT", PAGE, "STREAMS", self.key, last
                        )
                        delay = RETRY_MIN
                        if not reply:
                            await trio.lowlevel.checkpoint()
                            continue
                        for entry_id, flat in reply[0][1]:
                            last = entry_id
                            yield _event(entry_id, flat)
                        wait = pace() if pace is not None else 0.0
                        if wait > 0:
                            await trio.sleep(wait)
            except RedisUnavailableError:
                if not reconnect:
                    raise
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)


async def _last_id(conn: Link, key: str) -> str:
    reply = await conn.execute("XREVRANGE", key, "+", "-", "COUNT", 1)
    return reply[0][0] if reply else "0-0"
