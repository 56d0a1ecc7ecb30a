"""Reading records and changing them atomically: the one door services use to Redis.

Lost replies (see store/client.py): ``apply`` runs a script that is not idempotent, so
after a dropped connection the client raises :class:`~tinytown.errors.ReplyLostError`
instead of running it again. ``apply`` settles that itself whenever the record tells
whether the write happened (a compare-and-set with a new value: ``update``, creations
with ``expected=None``); otherwise -- ``expected='*'`` or no new value, hence every
``run_ops`` -- the ReplyLostError reaches the caller, whose ops may or may not have run.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from tinytown.errors import MalformedRecordError, ReplyLostError
from tinytown.model import Message, dumps, loads, now
from tinytown.store.client import Arg, Redis
from tinytown.store.events import EventStream
from tinytown.store.keys import Keys
from tinytown.store.scripts import APPLY

if TYPE_CHECKING:
    import trio

T = TypeVar("T")
Op = list[str]

#: Events kept in the stream (approximately: MAXLEN ~).
EVENTS_MAXLEN = 10_000
DELETE = "\0DEL"
#: Op arguments longer than this go to APPLY as separate script arguments, not inside the
#: ops' JSON: a message is then encoded once (its own JSON), never escaped again.
BLOB_MIN = 128
#: Malformed-record warnings kept for front ends (the newest; ``Warnings.total`` counts all).
WARNINGS_KEPT = 100


class Warnings(collections.deque[str]):
    """The newest :data:`WARNINGS_KEPT` warnings; ``total`` counts every one ever noted,
    so a long-running town's memory stays flat."""

    def __init__(self, items: Iterable[str] = (), maxlen: int = WARNINGS_KEPT) -> None:
        super().__init__((), maxlen)
        self.total = 0
        self.extend(items)

    def append(self, item: str) -> None:
        self.total += 1
        super().append(item)

    def extend(self, items: Iterable[str]) -> None:
        for item in items:
            self.append(item)

    @property
    def dropped(self) -> int:
        """How many warnings were noted but are no longer kept."""
        return self.total - len(self)


def _as_warnings(items: Iterable[str]) -> Warnings:
    return items if isinstance(items, Warnings) else Warnings(items)


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
    warnings: Warnings = attrs.field(factory=Warnings, converter=_as_warnings)
    #: The town's event stream (reads and following).
    events: EventStream = attrs.field(init=False)

    @events.default
    def _events(self) -> EventStream:
        return EventStream(self.redis, self.keys.events)

    # -- the connection --------------------------------------------------------------

    def describe(self) -> str:
        """Where Redis is, without credentials (for messages and status)."""
        return self.redis.address.describe()

    @property
    def reconnect(self) -> bool:
        """Whether commands ride out outages (the runtime) or fail fast (one-shot)."""
        return self.redis.reconnect

    @reconnect.setter
    def reconnect(self, value: bool) -> None:
        self.redis.reconnect = value

    @property
    def reconnected(self) -> trio.Event:
        """Set after the first success that follows an outage (then replaced): whoever
        holds it looks again at what a lost wake-up or reply may have hidden."""
        return self.redis.reconnected

    async def aclose(self) -> None:
        """Close the pooled connections. Shielded from cancellation (a socket close)."""
        await self.redis.aclose()

    async def get(self, cls: type[T], key: str) -> T | None:
        """Read one record, or None when absent. Raises MalformedRecordError.

        Reads are idempotent: retried after a lost reply. Cancellable (nothing changes)."""
        raw = await self.redis.execute("GET", key)
        return None if raw is None else loads(cls, raw, where=key)

    async def get_raw(self, key: str) -> str | None:
        """The raw value at ``key`` (None when absent). Cancellable."""
        return await self.redis.execute("GET", key)

    async def mget(self, cls: type[T], keys: Sequence[str]) -> list[T]:
        """Read many records in one round trip, skipping (and noting) absent or bad ones.

        Cancellable (nothing changes)."""
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

    async def read_lists(self, keys: Sequence[str]) -> list[list[str]]:
        """Every element of each list, head first, in one round trip (idempotent).

        Cancellable (nothing changes)."""
        if not keys:
            return []
        return [list(r) for r in await self.redis.pipeline([["LRANGE", k, 0, -1] for k in keys])]

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
        guards, then set ``new`` ('' = leave, DELETE = delete) and run ``ops``.

        Raises Conflict or GuardFailed (nothing changed). After a lost reply the record
        is read again when it can tell what happened (``expected`` given and ``new`` a
        different value): it holds ``new`` -> the write happened, return; it still holds
        ``expected`` -> it did not, run again; anything else -> Conflict (a record equal
        to ``new`` written by someone else is taken as ours: records carry timestamps and
        ids, so that does not happen by chance). Otherwise ReplyLostError is raised: the
        write and its ops may or may not have happened. Cancellable; once the script was
        sent, a cancelled apply may or may not have happened.
        """
        blobs: list[str | bytes] = []
        args: list[Arg] = [
            "" if expected is None else expected,
            new,
            encode_ops(ops, blobs),
            json.dumps([[[str(a) for a in cmd], want] for cmd, want in guards]),
        ]
        settles = expected != "*" and new not in ("", expected)
        if new == DELETE and expected is None:
            settles = False
        while True:
            try:
                result = await self.redis.run_script(APPLY, [key], [*args, *blobs])
                break
            except ReplyLostError:
                if not settles:
                    raise
                current = await self.redis.execute("GET", key)  # idempotent: retried
                if current == new or (new == DELETE and current is None):
                    return
                if current != expected:
                    raise Conflict(key) from None
                # Still as before: the script did not run; run it again.
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

        A lost reply is settled by :meth:`apply` (the record tells whether the write
        happened), so the ops run at most once per returned record. One window is left:
        if our write happened and another writer changed the record before we could read
        it back, this looks like a conflict and ``change`` runs again on the newer record;
        a state transition then refuses (InvalidTransitionError although ours was done),
        a change that is not a transition would apply twice. Cancellable: once the write
        was sent, a cancelled update may or may not have happened.
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

    def deliver_ops(
        self, message: Message, *, event: bool = True, payload: str | None = None
    ) -> list[Op]:
        """Push ``message`` into its recipient's inbox and wake the recipient.

        High and urgent messages go to the head of the list and are taken first.
        ``payload`` is ``dumps(message)`` when the caller already has it (encode once).
        """
        push = "LPUSH" if message.priority.jumps_queue else "RPUSH"
        ops: list[Op] = [
            [push, self.keys.inbox(message.recipient), payload or dumps(message)],
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
        """Run commands atomically (one script call).

        Not idempotent: after a lost reply raises ReplyLostError (the ops may or may not
        have run), never runs them twice. Callers that need exactly-once effects use
        :meth:`apply` with a compare-and-set or guards, or recover by reading state.
        Cancellable: once sent, a cancelled call may or may not have run.
        """
        if ops:
            await self.apply(self.keys.meta, ops=ops)


def encode_ops(ops: Sequence[Sequence[Arg]], blobs: list[str | bytes]) -> str:
    """The ops as APPLY's JSON; long string arguments are appended to ``blobs`` and
    referenced as ``[n]`` (1-based), so they cross to Redis as they are."""
    encoded: list[list[Any]] = []
    for op in ops:
        out: list[Any] = []
        for arg in op:
            if isinstance(arg, str):
                if len(arg) < BLOB_MIN:
                    out.append(arg)
                    continue
            elif not isinstance(arg, bytes):
                out.append(str(arg))
                continue
            blobs.append(arg)
            out.append([len(blobs)])
        encoded.append(out)
    return json.dumps(encoded, separators=(",", ":"))
