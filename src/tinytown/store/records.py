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
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs

from tinytown.errors import MalformedRecordError, ReplyLostError
from tinytown.model import Message, dumps, loads, now
from tinytown.store.client import Arg, Redis
from tinytown.store.events import EventStream
from tinytown.store.keys import Keys
from tinytown.store.known import KnownRecords
from tinytown.store.scripts import APPLY

if TYPE_CHECKING:
    import trio

T = TypeVar("T")
Op = list[str]
#: Conditions of an atomic step: (a read command, the reply it must give).
Guards = Sequence[tuple[Sequence[Arg], Any]]

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


@attrs.frozen
class Staged(Generic[T]):
    """A record's change computed but not written (:meth:`Store.stage`)."""

    record: T
    #: The record must still hold the value changed: ``(["GET", key], raw)``.
    guard: tuple[list[str], str]
    #: The SET of the new value, then the change's own ops.
    ops: list[Op]


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
    #: The last value this process saw of each record: a hint for compare-and-set
    #: (store/known.py), so ``update`` usually needs no read first.
    known: KnownRecords = attrs.field(factory=KnownRecords)

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
        if raw is None:
            self.known.forget(key)
            return None
        record = loads(cls, raw, where=key)
        self.known.note(key, raw, record)
        return record

    async def get_known(self, cls: type[T], key: str) -> T | None:
        """The record as this process last saw it (written or read), else as read now.
        Possibly stale: for decisions that a later compare-and-set re-checks, or that
        may lag a concurrent change by one step. Cancellable (nothing changes)."""
        known = self.known.record(key, cls)
        if known is not None:
            try:
                return known[1] if known[1] is not None else self.parse(cls, key, known[0])
            except MalformedRecordError:
                pass
        return await self.get(cls, key)

    def parse(self, cls: type[T], key: str, raw: str) -> T:
        """``raw`` (read from ``key``) as a ``cls`` record, parsed once per value seen:
        the parse of a value this process already knows is reused. Raises
        MalformedRecordError."""
        known = self.known.record(key, cls)
        if known is not None and known[0] == raw and known[1] is not None:
            return known[1]
        record = loads(cls, raw, where=key)
        self.known.note(key, raw, record)
        return record

    async def get_raw(self, key: str) -> str | None:
        """The raw value at ``key`` (None when absent). Cancellable."""
        raw = await self.redis.execute("GET", key)
        if raw is None:
            self.known.forget(key)
        else:
            self.known.note(key, raw)
        return raw

    async def mget(self, cls: type[T], keys: Sequence[str]) -> list[T]:
        """Read many records in one round trip, skipping (and noting) absent or bad ones.

        Cancellable (nothing changes)."""
        if not keys:
            return []
        out: list[T] = []
        for key, raw in zip(keys, await self.redis.execute("MGET", *keys), strict=True):
            if raw is None:
                self.known.forget(key)
                continue
            try:
                record = loads(cls, raw, where=key)
            except MalformedRecordError as exc:
                self.warnings.append(str(exc))
                continue
            self.known.note(key, raw, record)
            out.append(record)
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
        known = self.known
        while True:
            try:
                result = await self.redis.run_script(APPLY, [key], [*args, *blobs])
                break
            except ReplyLostError:
                _forget_written(known, key, ops)
                if not settles:
                    raise
                current = await self.redis.execute("GET", key)  # idempotent: retried
                if current == new or (new == DELETE and current is None):
                    return
                if current != expected:
                    raise Conflict(key) from None
                # Still as before: the script did not run; run it again.
            except BaseException:  # cancelled or failed once sent: anything may have run
                _forget_written(known, key, ops)
                raise
        if result == 0:
            known.forget(key)
            raise Conflict(key)
        if result < 0:
            index = -result - 1
            known.forget(key)
            cmd: Sequence[Arg] = guards[index][0] if index < len(guards) else ()
            if len(cmd) > 1:
                known.forget(str(cmd[1]))  # e.g. ["GET", key]: that record moved on
            raise GuardFailed(index)
        _note_written(known, key, new, ops)

    async def update(
        self,
        cls: type[T],
        key: str,
        change: Callable[[T], Awaitable[tuple[T, list[Op]]] | tuple[T, list[Op]]],
        *,
        missing: Callable[[], Exception],
        guards: Guards = (),
    ) -> T:
        """Read-modify-write ``key`` with compare-and-set, retrying on concurrent change.

        ``change`` returns the new record and extra ops to run in the same atomic step; it
        may raise (e.g. InvalidTransitionError) to abort with nothing changed. ``guards``
        (e.g. other records :meth:`stage` read) must hold too: GuardFailed otherwise,
        nothing changed.

        When this process knows the record's last value (``known``: it wrote or read it),
        that value is the first guess and no read is made: the compare-and-set refuses a
        stale guess (then a fresh read decides), and a ``change`` that raises on a guess
        is run again on a fresh read before its exception is believed.

        A lost reply is settled by :meth:`apply` (the record tells whether the write
        happened), so the ops run at most once per returned record. One window is left:
        if our write happened and another writer changed the record before we could read
        it back, this looks like a conflict and ``change`` runs again on the newer record;
        a state transition then refuses (InvalidTransitionError although ours was done),
        a change that is not a transition would apply twice. Cancellable: once the write
        was sent, a cancelled update may or may not have happened.
        """
        guess = True
        while True:
            raw, record, ops = await self._changed(cls, key, change, missing, guess)
            new = dumps(record)
            try:
                await self.apply(key, expected=raw, new=new, ops=ops, guards=guards)
            except Conflict:
                guess = False
                continue
            self.known.note(key, new, record)
            return record

    async def stage(
        self,
        cls: type[T],
        key: str,
        change: Callable[[T], tuple[T, list[Op]]],
        *,
        missing: Callable[[], Exception],
    ) -> Staged[T]:
        """:meth:`update` without the write: the new record, the guard that the record is
        still the one changed, and the ops that write it (with ``change``'s own), to ride
        in another record's atomic step (``guards=[staged.guard]``, ``ops=staged.ops``).
        A GuardFailed of that step means the record moved on: stage it again (the guess
        is then forgotten, so it is read fresh). Raises what ``change`` raises, decided
        on a fresh read. Cancellable (nothing changes)."""
        raw, record, ops = await self._changed(cls, key, change, missing, True)
        return Staged(record, (["GET", key], raw), [["SET", key, dumps(record)], *ops])

    async def _changed(
        self,
        cls: type[T],
        key: str,
        change: Callable[[T], Awaitable[tuple[T, list[Op]]] | tuple[T, list[Op]]],
        missing: Callable[[], Exception],
        guess: bool,
    ) -> tuple[str, T, list[Op]]:
        """(the raw value changed, the new record, its ops): from the known value when
        ``guess`` and one is known, a refusal on it checked again on a fresh read."""
        known = self.known.record(key, cls) if guess else None
        while True:
            if known is not None:  # what this process last saw: checked by the CAS
                raw = known[0]
                try:
                    current = known[1] if known[1] is not None else self.parse(cls, key, raw)
                except MalformedRecordError:
                    known = None
                    continue
            else:
                raw = await self.redis.execute("GET", key)
                if raw is None:
                    self.known.forget(key)
                    raise missing()
                current = loads(cls, raw, where=key)
            try:
                outcome = change(current)
                if not isinstance(outcome, tuple):
                    outcome = await outcome
            except Exception:
                if known is None:
                    raise
                known = None  # refused on a value that may be stale: decide on a fresh read
                continue
            return raw, outcome[0], outcome[1]

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
        self,
        message: Message,
        *,
        event: bool = True,
        payload: str | None = None,
        direct: bool = False,
    ) -> list[Op]:
        """Push ``message`` into its recipient's inbox and wake the recipient.

        High and urgent messages go to the head of the list and are taken first.
        ``payload`` is ``dumps(message)`` when the caller already has it (encode once).
        ``direct``: to an idle agent of a running town with an empty inbox, deliver it
        into the agent's in-flight list and publish it whole, so the agent holds it without
        a round trip (the ``TT.DELIVER`` op: for ``run_flat`` only, not ``apply``).
        """
        push = "LPUSH" if message.priority.jumps_queue else "RPUSH"
        raw = payload or dumps(message)
        recipient = message.recipient
        ops: list[Op]
        if direct:
            keys = self.keys
            ops = [
                ["TT.DELIVER", keys.inbox(recipient), keys.inflight(recipient),
                 keys.agent(recipient), keys.runtime, keys.wake, recipient, push, raw]
            ]  # fmt: skip
        else:
            ops = [[push, self.keys.inbox(recipient), raw], ["PUBLISH", self.keys.wake, recipient]]
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


def _note_written(known: KnownRecords, key: str, new: str, ops: Sequence[Sequence[Arg]]) -> None:
    """After a successful APPLY: the values it wrote are what the keys now hold."""
    if new == DELETE:
        known.forget(key)
    elif new:
        known.note(key, new)
    for op in ops:
        if len(op) >= 2 and str(op[0]).upper() in _WRITES:
            if str(op[0]).upper() == "SET" and len(op) == 3 and isinstance(op[2], str):
                known.note(str(op[1]), op[2])
            else:
                known.forget(str(op[1]))


def _forget_written(known: KnownRecords, key: str, ops: Sequence[Sequence[Arg]]) -> None:
    """After an APPLY whose outcome is unknown: forget every record it may have changed."""
    known.forget(key)
    for op in ops:
        if len(op) >= 2 and str(op[0]).upper() in _WRITES:
            known.forget(str(op[1]))


#: Ops that (may) change a string record at op[1].
_WRITES = frozenset({"SET", "DEL", "UNLINK", "GETDEL", "SETEX", "PSETEX", "SETNX", "APPEND"})


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
