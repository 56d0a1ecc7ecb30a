"""A mailbox as its actor sees it (an agent's, or the supervisor's): taking, parsing,
recovering, acknowledging, and answering the messages the runtime handles itself.

Messages move atomically from the inbox to the in-flight list (``Queues.take``) and stay
there until acknowledged together with their effect, so a crash never loses one. The
mailbox remembers what it holds (by raw value): whenever a take's reply may have been
lost (the client says so, or Redis reconnected), it re-reads the in-flight list and
re-holds what it did not know, so nothing is stranded and nothing handled twice.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

import attrs

from tinytown.errors import MalformedRecordError, ReplyLostError
from tinytown.model import (
    Message,
    MessageType,
    Pong,
    Priority,
    StatusResponse,
    dumps,
    loads,
    new_id,
    now,
)
from tinytown.runtime.context import Context
from tinytown.store.records import Op

Held = list[tuple[str, Message]]  # (raw JSON as stored, parsed message)
TAKE_BATCH = 50
Status = Callable[[], Awaitable[StatusResponse]]


class Mailbox:
    def __init__(self, ctx: Context, agent_id: str, name: Callable[[], str]) -> None:
        self.ctx = ctx
        self.id = agent_id
        self.name = name
        self._queues = ctx.queues
        self._held: set[str] = set()  # raw values taken and not yet acknowledged
        self._recheck = False
        self._epoch = ctx.hub.epoch
        self._reconnected = ctx.queues.reconnected
        #: What the last :meth:`recover` read: a message delivered into flight and read
        #: there may still be announced afterwards; it is not held a second time.
        self._recovered: set[str] = set()
        #: The last take came from delivered messages only: the inbox was not looked at.
        self.unchecked = False
        ctx.hub.take_direct(agent_id)  # a new mailbox reads its flight at start instead

    async def recover(self) -> Held:
        """Everything in flight (left by an earlier run, or not yet known to this one),
        minus what this mailbox already holds. Cancellable; nothing is moved."""
        self._recheck = False
        self._epoch = self.ctx.hub.epoch
        self._reconnected = self._queues.reconnected
        self.ctx.hub.take_direct(self.id)  # in flight: read below
        in_flight = await self._queues.in_flight(self.id)
        self._recovered = set(in_flight)
        return await self._hold([r for r in in_flight if r not in self._held])

    async def take(self) -> Held:
        """Move up to TAKE_BATCH messages into flight, oldest (or most urgent) first, and
        return them with anything a lost reply or a reconnect left unseen in flight.
        Messages delivered straight into flight (to this agent while it waited idle) are
        taken without a round trip; the inbox is then left for the next take
        (:attr:`unchecked`).

        Cancellable: cancelled after the move, the messages are in flight and the next
        :meth:`recover` (every actor start) finds them."""
        raws = [r for r in self.ctx.hub.take_direct(self.id) if r not in self._recovered]
        self.unchecked = bool(raws)
        if not raws:
            try:
                raws = await self._queues.take(self.id, TAKE_BATCH)
            except ReplyLostError:
                raws = []
                self._recheck = True
        result = await self._hold(raws)
        if self._recheck or self._epoch != self.ctx.hub.epoch or self._reconnected.is_set():
            result = await self.recover() + result  # taken earlier, so handled first
        if self.ctx.on_take:
            self.ctx.on_take(self.id, len(result))
        return result

    def look_again(self) -> None:
        """Have the next :meth:`take` read the in-flight list too (something may be there
        that this mailbox was never told of)."""
        self._recheck = True

    def ack_ops(self, held: Held | Sequence[str]) -> list[Op]:
        """Ops acknowledging held messages; run them with the effect they record, then
        call :meth:`acked`."""
        return self._queues.ack_ops(self.id, _raws(held))

    def acked(self, held: Held | Sequence[str]) -> None:
        """Forget acknowledged (or returned) messages."""
        self._held.difference_update(_raws(held))

    async def ack(self, held: Held | Sequence[str], extra_ops: Sequence[Op] = ()) -> None:
        """Acknowledge ``held`` together with ``extra_ops`` (which write no record: lists,
        streams, PUBLISH), atomically, in one flat script call. Cancellable: if
        cancelled, the messages may still be in flight and are handled again later."""
        if held or extra_ops:
            await self._queues.run([*extra_ops, *self.ack_ops(held)])
        self.acked(held)

    async def answer_runtime_messages(self, held: Held, status: Status) -> Held:
        """Answer ``ping`` and ``status_request`` at once, without a CLI round; return the
        rest. Cancellable: unanswered ones stay in flight and are answered again."""
        answered = [
            (r, m) for r, m in held if m.type in (MessageType.PING, MessageType.STATUS_REQUEST)
        ]
        if not answered:
            return held
        state = None
        if any(m.type is MessageType.STATUS_REQUEST for _, m in answered):
            state = await status()
        ops: list[Op] = []
        pongs = _Pongs(self.id)
        deliver = self.ctx.store.deliver_ops
        for _, msg in answered:
            if msg.type is MessageType.PING:
                reply, payload = pongs.answer(msg)
                ops += deliver(reply, payload=payload)
            else:
                reply = Message.new(self.id, msg.sender, state, correlation_id=msg.id)  # type: ignore[arg-type]
                ops += deliver(reply)
        await self.ack(answered, _one_wake_each(ops))
        done = {id(m) for _, m in answered}
        return [(r, m) for r, m in held if id(m) not in done]

    async def _hold(self, raws: list[str]) -> Held:
        fresh = [r for r in raws if r not in self._held]
        self._held.update(fresh)
        return await self._parse(fresh)

    async def _parse(self, raws: list[str]) -> Held:
        held: Held = []
        bad: list[str] = []
        for raw in raws:
            try:
                held.append((raw, loads(Message, raw)))
            except MalformedRecordError as exc:
                bad.append(raw)
                self.ctx.report(f"{self.name()}: skipped a malformed message: {exc}")
        if bad:  # reported and dropped: it can never be handled
            event = self.ctx.store.event_op("malformed", agent=self.id, text=bad[0][:200])
            await self.ack(bad, [event])
        return held


class _Pongs:
    """Pongs for one batch of pings, serialised once: the model's own JSON of one pong
    with placeholder values, then each pong's id, recipient and correlation id put in as
    JSON strings (the batch shares its timestamp). ~4x cheaper than a ``dumps`` each."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.stamp = now()
        self._template: str | None = None

    def answer(self, ping: Message) -> tuple[Message, str]:
        """The pong answering ``ping``, and its JSON."""
        pong = Message(
            new_id(), self.agent_id, ping.sender, Pong(), Priority.NORMAL, self.stamp, ping.id
        )
        if self._template is None:
            p = _PLACEHOLDERS
            self._template = dumps(
                attrs.evolve(
                    pong, id=p["id"], recipient=p["recipient"], correlation_id=p["correlation_id"]
                )
            )
            if any(self._template.count(q) != 1 for q in _QUOTED.values()):
                self._template = ""  # a placeholder collides: serialise each pong
        if not self._template:
            return pong, dumps(pong)
        payload = self._template
        for field, quoted in _QUOTED.items():
            payload = payload.replace(quoted, _json(getattr(pong, field)), 1)
        return pong, payload


_PLACEHOLDERS = {"id": "@tt-id@", "recipient": "@tt-to@", "correlation_id": "@tt-re@"}
_QUOTED = {field: f'"{value}"' for field, value in _PLACEHOLDERS.items()}


def _json(value: str) -> str:
    """A JSON string as the model's ``dumps`` writes it."""
    return json.dumps(value, ensure_ascii=False)


def _one_wake_each(ops: list[Op]) -> list[Op]:
    """The ops with each identical PUBLISH kept once, at the end: they run in one atomic
    step, so one wake-up per recipient after all the pushes wakes it just as well
    (a batch of 50 pongs to the supervisor: 1 wake-up, not 50)."""
    wakes = {tuple(op): op for op in ops if op[0] == "PUBLISH"}
    return [op for op in ops if op[0] != "PUBLISH"] + list(wakes.values())


def _raws(held: Held | Sequence[str]) -> list[str]:
    return [h if isinstance(h, str) else h[0] for h in held]
