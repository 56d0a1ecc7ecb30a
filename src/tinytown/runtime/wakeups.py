"""Wake-ups: one pub/sub connection tells actors that their inbox (or anything) changed.

Senders push a message and PUBLISH the recipient's id on ``tt:<town>:wake`` in the same
atomic step. The hub turns those into per-key trio events, so a thousand idle actors
cost one Redis connection and no polling. After a reconnect every key is woken, so a
wake-up missed during an outage only delays, never loses, a message.
"""

from __future__ import annotations

import trio

from tinytown.errors import RedisUnavailableError
from tinytown.store.client import Redis


class WakeHub:
    """Per-key wake-up counters. Take a token before checking Redis, then wait on it:
    a wake-up that lands in between is never missed."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._events: dict[str, trio.Event] = {}
        self._epoch = 0  # bumped by notify_all: wakes every key at once
        self.subscribed = trio.Event()

    def token(self, key: str) -> tuple[int, int]:
        return self._counts.get(key, 0), self._epoch

    def notify(self, key: str) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    def notify_all(self) -> None:
        self._epoch += 1
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    async def wait(self, key: str, token: tuple[int, int]) -> None:
        """Return once ``key`` (or every key) was woken after ``token`` was taken.

        Cancellable; nothing is consumed, so a cancelled wait loses no wake-up."""
        while self.token(key) == token:
            await self._events.setdefault(key, trio.Event()).wait()

    async def run(
        self,
        redis: Redis,
        channel: str,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Subscribe to ``channel`` and dispatch until cancelled; reconnects with backoff.

        Reports started once the first subscription is live.
        """
        delay = 0.05
        started = False
        while True:
            try:
                async with redis.dedicated() as conn:
                    await conn.send("SUBSCRIBE", channel)
                    await conn.read_reply()
                    delay = 0.05
                    self.subscribed.set()
                    self.notify_all()  # anything sent while we were not listening
                    if not started:
                        started = True
                        task_status.started()
                    while True:
                        reply = await conn.read_reply()
                        if reply and reply[0] == "message":
                            self.notify(reply[2])
            except RedisUnavailableError:
                self.subscribed = trio.Event()
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
