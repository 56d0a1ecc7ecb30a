"""Wake-ups: one pub/sub connection tells actors that their inbox (or anything) changed.

Senders push a message and PUBLISH the recipient's id on ``tt:<town>:wake`` in the same
atomic step (or, for an idle agent, put it in its flight and publish it whole: the hub
keeps it for the agent's mailbox, which then needs no round trip to take it). The hub
turns those into per-key trio events, so a thousand idle actors cost one Redis
connection and no polling. After a reconnect every key is woken, so a
wake-up missed during an outage only delays, never loses, a message.

Memory is bounded by the tokens alive: the hub keeps a key's pending token only through
a weak reference, so a key nobody waits on costs nothing, however many keys a long run
has seen.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import trio

from tinytown.errors import RedisUnavailableError
from tinytown.store.queues import Queues


class Token:
    """Taken before checking Redis; fired by the next wake-up of its key (or of all keys)."""

    __slots__ = ("__weakref__", "event")

    def __init__(self) -> None:
        self.event = trio.Event()


class WakeHub:
    """Per-key wake-ups. Take a token before checking Redis, then wait on it: a wake-up
    that lands in between is never missed."""

    def __init__(self) -> None:
        self._pending: weakref.WeakValueDictionary[str, Token] = weakref.WeakValueDictionary()
        #: Messages delivered straight into an agent's flight (``TT.DELIVER``), published
        #: whole: the agent's mailbox holds them without a take (Mailbox.take drains these).
        self._direct: dict[str, list[str]] = {}
        #: Bumped by every (re)subscription: a reconnect may have lost wake-ups and replies.
        self.epoch = 0
        self.subscribed = trio.Event()

    def token(self, key: str) -> Token:
        """The key's current token (shared by everyone waiting on the key)."""
        token = self._pending.get(key)
        if token is None:
            token = self._pending[key] = Token()
        return token

    def notify(self, key: str) -> None:
        token = self._pending.pop(key, None)
        if token is not None:
            token.event.set()

    def published(self, data: str) -> None:
        """One message of the wake channel: a key to wake, or (``key\npayload``) a message
        delivered into the key's flight, kept for its mailbox, and the key woken."""
        key, newline, payload = data.partition("\n")
        if newline:
            self._direct.setdefault(key, []).append(payload)
        self.notify(key)

    def take_direct(self, key: str) -> list[str]:
        """The messages delivered into ``key``'s flight since the last call, oldest first
        (each is in the in-flight list already)."""
        return self._direct.pop(key, [])

    def notify_all(self) -> None:
        pending = list(self._pending.values())
        self._pending.clear()
        for token in pending:
            token.event.set()

    def __len__(self) -> int:
        """Keys with a live pending token (for memory checks)."""
        return len(self._pending)

    async def wait(self, key: str, token: Token) -> None:
        """Return once ``key`` (or every key) was woken after ``token`` was taken.

        Cancellable; nothing is consumed, so a cancelled wait loses no wake-up."""
        del key  # the token knows its key; kept for readability at call sites
        await token.event.wait()

    async def run(
        self,
        queues: Queues,
        report: Callable[[str], None] | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen to the town's wake channel and dispatch until cancelled; reconnects with
        backoff, and wakes every key after each (re)subscription.

        Reports started once the first subscription is live. Cancellable at any point.
        """
        delay = 0.05
        started = False

        def subscribed() -> None:
            nonlocal delay, started
            delay = 0.05
            self.epoch += 1
            self.subscribed.set()
            self.notify_all()  # anything sent while we were not listening
            if not started:
                started = True
                task_status.started()

        while True:
            try:
                await queues.listen(subscribed, self.published)
            except Exception as exc:  # e.g. LOADING after a restart: never end the town
                if not isinstance(exc, RedisUnavailableError) and report is not None:
                    report(f"wake-ups: {type(exc).__name__}: {exc}; subscribing again")
                self.subscribed = trio.Event()
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
