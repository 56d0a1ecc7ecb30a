"""Reading records and changing them atomically: the one door services use to Redis."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import attrs

from tinytown.errors import MalformedRecordError
from tinytown.model import Message, dumps, loads, now
from tinytown.store.client import Arg, Redis
from tinytown.store.keys import Keys
from tinytown.store.scripts import APPLY

T = TypeVar("T")
Op = list[str]

#: Events kept in the stream (approximately: MAXLEN ~).
EVENTS_MAXLEN = 10_000
DELETE = "\0DEL"


class Conflict(Exception):
    """The record changed between read and write (retried by :meth:`Store.update`)."""


class GuardFailed(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


@attrs.define
class Store:
    """A town's Redis client and key names, with atomic record updates."""

    redis: Redis
    keys: Keys
    #: Malformed records met while reading; front ends report them, nothing crashes.
    warnings: list[str] = attrs.field(factory=list)

    async def get(self, cls: type[T], key: str) -> T | None:
        """Read one record, or None when absent. Raises MalformedRecordError."""
        raw = await self.redis.execute("GET", key)
        return None if raw is None else loads(cls, raw, where=key)

    async def get_raw(self, key: str) -> str | None:
        return await self.redis.execute("GET", key)

    async def mget(self, cls: type[T], keys: Sequence[str]) -> list[T]:
        """Read many records in one round trip, skipping (and noting) absent or bad ones."""
        if not keys:
            return []
        out: list[T] = []
        for key, raw in zip(keys, await self.redis.execute("MGET", *keys), strict=True):
            if raw is None:
                continue
            try:
                out.append(loads(cls, raw, where=key))
            except MalformedRecordError as exc:
                self.warnings.append(str(exc))
        return out

    async def apply(
        self,
        key: str,
        *,
        expected: str | None = "*",
        new: str = "",
        ops: Sequence[Sequence[Arg]] = (),
        guards: Sequence[tuple[Sequence[Arg], Any]] = (),
    ) -> None:
        """Atomically: check ``key`` holds ``expected`` (None = absent, '*' = any) and the
        guards, then set ``new`` and run ``ops``. Raises Conflict or GuardFailed."""
        result = await self.redis.run_script(
            APPLY,
            [key],
            [
                "" if expected is None else expected,
                new,
                json.dumps([[str(a) for a in op] for op in ops]),
                json.dumps([[[str(a) for a in cmd], want] for cmd, want in guards]),
            ],
        )
        if result == 0:
            raise Conflict(key)
        if result < 0:
            raise GuardFailed(-result - 1)

    async def update(
        self,
        cls: type[T],
        key: str,
        change: Callable[[T], Awaitable[tuple[T, list[Op]]] | tuple[T, list[Op]]],
        *,
        missing: Callable[[], Exception],
    ) -> T:
        """Read-modify-write ``key`` with compare-and-set, retrying on concurrent change.

        ``change`` returns the new record and extra ops to run in the same atomic step; it
        may raise (e.g. InvalidTransitionError) to abort with nothing changed.
        """
        while True:
            raw = await self.redis.execute("GET", key)
            if raw is None:
                raise missing()
            current = loads(cls, raw, where=key)
            outcome = change(current)
            if not isinstance(outcome, tuple):
                outcome = await outcome
            record, ops = outcome
            try:
                await self.apply(key, expected=raw, new=dumps(record), ops=ops)
            except Conflict:
                continue
            return record

    # -- op builders -------------------------------------------------------------------

    def event_op(self, kind: str, **fields: str | None) -> Op:
        """XADD one event to the town stream (capped)."""
        op = ["XADD", self.keys.events, "MAXLEN", "~", str(EVENTS_MAXLEN), "*"]
        op += ["kind", kind, "at", now()]
        for name, value in fields.items():
            if value is not None:
                op += [name, value]
        return op

    def deliver_ops(self, message: Message, *, event: bool = True) -> list[Op]:
        """Push ``message`` into its recipient's inbox and wake the recipient.

        High and urgent messages go to the head of the list and are taken first.
        """
        push = "LPUSH" if message.priority.jumps_queue else "RPUSH"
        ops: list[Op] = [
            [push, self.keys.inbox(message.recipient), dumps(message)],
            ["PUBLISH", self.keys.wake, message.recipient],
        ]
        if event:
            ops.append(
                self.event_op(
                    "message",
                    agent=message.recipient,
                    sender=message.sender,
                    type=message.type.value,
                    text=message.text[:200],
                    message_id=message.id,
                )
            )
        return ops

    async def run_ops(self, ops: Sequence[Sequence[Arg]]) -> None:
        """Run commands atomically (one script call)."""
        if ops:
            await self.apply(self.keys.meta, ops=ops)
