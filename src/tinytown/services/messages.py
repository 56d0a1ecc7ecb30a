"""Messages: sending, broadcasting, reading inboxes, and the event stream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import attrs

from tinytown.errors import (
    AmbiguousReferenceError,
    InvalidInputError,
    MalformedRecordError,
    NotFoundError,
)
from tinytown.model import (
    AckType,
    Agent,
    Confirmation,
    Informational,
    Message,
    MessageType,
    Priority,
    Query,
    TaskBody,
    dumps,
    loads,
    new_id,
)
from tinytown.model.ids import SUPERVISOR_ID, is_uuid
from tinytown.model.message import MAX_MESSAGE_BYTES, Body
from tinytown.services.agents import AgentService
from tinytown.services.text import check_text
from tinytown.store import indexes, lookups
from tinytown.store.events import Event
from tinytown.store.flat import run_flat
from tinytown.store.records import GuardFailed, Op, Store

#: Supervisor mail kept for ``tt inbox supervisor``.
MAIL_KEEP = 1000
#: Answered question ids kept (the mail they answer is capped at MAIL_KEEP too).
ANSWERED_KEEP = 1000
HEX_OR_HYPHEN = frozenset("0123456789abcdef-")

#: What ``tt send NAME`` sends without a type flag: work (a task, one round).
SEND_KIND = "task"
#: What ``tt send --all`` and the REPL's ``broadcast`` send without one: a note. It starts
#: no round and gets no reply; it rides along with each agent's next round, so a
#: broadcast to a thousand paid agents costs nothing by itself (``--task`` for work).
BROADCAST_KIND = "info"

__all__ = ["BROADCAST_KIND", "MAIL_KEEP", "SEND_KIND", "Event", "MessageService", "make_body"]


def make_body(kind: str, text: str) -> Body:
    """The body for ``tt send`` flags: task, query, info, ack."""
    match kind:
        case "task":
            return TaskBody(text)
        case "query":
            return Query(text)
        case "info":
            return Informational(text)
        case "ack":
            return Confirmation(AckType.from_text(text))
    raise InvalidInputError(f"Unknown message kind {kind!r}.")


class MessageService:
    def __init__(self, store: Store, agents: AgentService) -> None:
        self.store = store
        self.agents = agents
        self.keys = store.keys

    async def sender_id(self, sender: str | None) -> str:
        return await self.agents.resolve_id(sender) if sender else SUPERVISOR_ID

    async def _sender(self, sender: str | None) -> tuple[str, list[tuple[list[str], int]]]:
        """(the sender's id, guards for the delivering script). A full agent id costs no
        round trip: the script checks the agent still exists (else GuardFailed)."""
        ref = (sender or "").strip().lower()
        if is_uuid(ref) and ref != SUPERVISOR_ID:
            return ref, [(["EXISTS", self.keys.agent(ref)], 1)]
        return await self.sender_id(sender), []

    def _no_sender(self, sender_id: str) -> NotFoundError:
        return NotFoundError(f"No agent with id {sender_id} (the sender) in town {self.keys.town}.")

    async def send(
        self,
        to: str,
        body: Body,
        *,
        urgent: bool = False,
        sender: str | None = None,
        correlation_id: str | None = None,
    ) -> Message:
        """Put one message in the recipient's inbox (urgent ones at the head).

        One round trip when ``to`` and ``sender`` are ids (or the supervisor): both
        agents' existence is checked inside the delivering script (NotFoundError).
        Not retried after a lost reply (a second delivery would duplicate the message):
        raises ReplyLostError then, and the message may or may not have been delivered.
        Cancellable; once sent, a cancelled send may or may not have been delivered.
        """
        sender_id, guards = await self._sender(sender)
        if is_uuid(to) and to != SUPERVISOR_ID:
            # The common API case: check the agent exists inside the delivering script
            # itself, so a send is one round trip.
            recipient = to
            guards.append((["EXISTS", self.keys.agent(to)], 1))
        else:
            recipient = await self.agents.resolve_id(to)
        message = Message.new(
            sender_id,
            recipient,
            body,
            priority=Priority.URGENT if urgent else Priority.NORMAL,
            correlation_id=correlation_id,
        )
        payload = _encode(message)
        # Straight into the flight of an idle agent that waits (one hop: docs/runtime.md).
        ops = self.store.deliver_ops(message, payload=payload, direct=True)
        if correlation_id:  # an answer: the question it answers no longer waits
            ops += self._answered_ops(correlation_id)
        try:
            # No record changes: the flat script (no JSON op list to build or decode).
            await run_flat(self.store, ops, guards)
        except GuardFailed as failed:
            if guards[failed.index][0][1] == self.keys.agent(sender_id):
                raise self._no_sender(sender_id) from None
            raise NotFoundError(f"No agent with id {to} in town {self.keys.town}.") from None
        return message

    async def send_to_role(
        self,
        role: str,
        body: Body,
        *,
        urgent: bool = False,
        sender: str | None = None,
    ) -> list[Message]:
        """One message (each its own id, as :meth:`send` makes it) to every live agent
        with ``role`` except the sender, delivered to all or to none in one atomic step
        that also checks each recipient still exists. Two round trips (the agents are
        read in one). Raises NotFoundError when no live agent other than the sender has
        that role (or one was removed meanwhile); ReplyLostError after a lost reply
        (delivered to all or to none). Cancellable like :meth:`send`.
        """
        sender_id, guards = await self._sender(sender)
        recipients = [
            a.id for a in await self._live_agents() if a.role_id == role and a.id != sender_id
        ]
        if not recipients:
            raise NotFoundError(f"No live agent other than the sender has role {role!r}.")
        priority = Priority.URGENT if urgent else Priority.NORMAL
        messages = [Message.new(sender_id, r, body, priority=priority) for r in recipients]
        ops: list[Op] = []
        for message in messages:
            ops += self.store.deliver_ops(message, payload=_encode(message))
            guards.append((["EXISTS", self.keys.agent(message.recipient)], 1))
        try:
            await self.store.apply(self.keys.meta, ops=ops, guards=guards)
        except GuardFailed as failed:
            gone = guards[failed.index][0][1]
            if gone == self.keys.agent(sender_id):
                raise self._no_sender(sender_id) from None
            raise NotFoundError(f"Agent {gone.rsplit(':', 1)[-1]} was removed meanwhile.") from None
        return messages

    async def _live_agents(self) -> list[Agent]:
        """Every agent that takes messages (not cold, stopped or error), in one round
        trip; malformed records are noted in store.warnings."""
        raws, _ = await lookups.record_sets(self.store, agents=True)
        live = []
        for raw in raws:
            try:
                agent = loads(Agent, raw)
            except MalformedRecordError as exc:
                self.store.warnings.append(str(exc))
                continue
            if not agent.state.terminal:
                live.append(agent)
        return sorted(live, key=lambda a: a.created_at)

    # -- questions -------------------------------------------------------------------

    async def questions(self) -> list[Message]:
        """Every ``query`` the supervisor received and still keeps (its mail, inbox and
        in-flight list), oldest first, each once. Cancellable (nothing changes)."""
        queued, inflight = await self.inbox(SUPERVISOR_ID)
        seen: dict[str, Message] = {}
        for msg in queued + inflight:
            if msg.type is MessageType.QUERY:
                seen.setdefault(msg.id, msg)
        return sorted(seen.values(), key=lambda m: m.created_at)

    async def questions_waiting(self) -> list[Message]:
        """The supervisor's questions nobody has replied to yet (``tt reply``), oldest
        first. Cancellable (nothing changes)."""
        asked = await self.questions()
        answered = await indexes.answered_questions(self.store, [m.id for m in asked])
        return [m for m in asked if m.id not in answered]

    def _answered_ops(self, question_id: str) -> list[Op]:
        """Record ``question_id`` as answered (the newest ANSWERED_KEEP are kept)."""
        return [
            ["ZADD", self.keys.answered, str(time.time()), question_id],
            ["ZREMRANGEBYRANK", self.keys.answered, "0", str(-ANSWERED_KEEP - 1)],
        ]

    async def find_question(self, ref: str) -> Message:
        """The message to the supervisor whose id is ``ref`` or starts with it (4 or more
        hex digits). Raises InvalidInputError, NotFoundError, AmbiguousReferenceError."""
        wanted = ref.strip().lower()
        if len(wanted.replace("-", "")) < 4 or any(c not in HEX_OR_HYPHEN for c in wanted):
            raise InvalidInputError(
                f"{ref!r} is not a message id (give the id, or 4 or more of its first hex digits)."
            )
        queued, inflight = await self.inbox(SUPERVISOR_ID)
        found: dict[str, Message] = {}
        for msg in queued + inflight:
            if msg.id.startswith(wanted):
                found.setdefault(msg.id, msg)
        if not found:
            raise NotFoundError(f"No message {ref} in the supervisor's mail.")
        if len(found) > 1:
            ids = ", ".join(sorted(m.id[:8] for m in found.values()))
            raise AmbiguousReferenceError(f"Message id {ref!r} is ambiguous: {ids}.")
        return next(iter(found.values()))

    async def reply(self, question_id: str, text: str, *, sender: str | None = None) -> Message:
        """Answer a message the supervisor received (a ``query``, usually): an
        ``informational`` message with ``correlation_id`` = the question's id, delivered
        to the asker's inbox atomically (like :meth:`send`), and the question recorded as
        answered in the same step. ``question_id`` may be a unique prefix (4+ hex digits).

        Raises InvalidInputError (bad id, empty text, a question the supervisor asked
        itself), NotFoundError (no such message; the asker is gone),
        AmbiguousReferenceError. Not retried after a lost reply (ReplyLostError: the reply
        may or may not have been delivered). Cancellable like :meth:`send`.
        """
        question = await self.find_question(question_id)
        if not text.strip():
            raise InvalidInputError("A reply needs some text.")
        if question.sender == SUPERVISOR_ID:
            raise InvalidInputError(
                f"Message {question.id[:8]} was sent by the supervisor itself; there is no"
                " agent to reply to."
            )
        message = Message.new(
            await self.sender_id(sender),
            question.sender,
            Informational(text),
            correlation_id=question.id,
        )
        payload = _encode(message)
        ops = [*self.store.deliver_ops(message, payload=payload), *self._answered_ops(question.id)]
        try:
            await self.store.apply(
                self.keys.meta,
                ops=ops,
                guards=[(["EXISTS", self.keys.agent(question.sender)], 1)],
            )
        except GuardFailed:
            raise NotFoundError(
                f"The agent that asked {question.id[:8]} ({question.sender[:8]}) no longer exists."
            ) from None
        return message

    async def broadcast(
        self, body: Body, *, urgent: bool = False, sender: str | None = None
    ) -> tuple[Message, int]:
        """One message (one id) into every live worker's inbox, all or none.

        The front ends send a note (:data:`BROADCAST_KIND`) unless told otherwise: only an
        actionable body (task, query) makes each agent run a round.
        Returns the message (addressed to the last recipient) and the number reached.
        Two round trips with an agent id (or no sender): the live agents are read in one,
        delivered to in the other, which also checks the sender still exists
        (NotFoundError otherwise, nothing sent).
        Raises ReplyLostError when the reply was lost (delivered to all or to none).
        Cancellable like :meth:`send`.
        """
        sender_id, guards = await self._sender(sender)
        live = await self._live_agents()
        message_id = new_id()
        priority = Priority.URGENT if urgent else Priority.NORMAL
        ops: list[Op] = []
        message = Message(message_id, sender_id, "*", body, priority)
        _encode(message)  # the size check; each copy differs only by its recipient
        for agent in live:
            message = attrs.evolve(message, recipient=agent.id)
            ops += self.store.deliver_ops(message, event=False)
        ops.append(
            self.store.event_op(
                "broadcast",
                sender=sender_id,
                type=body.kind.value,
                text=f"to {len(live)} agent(s): {message.text[:200]}",
                message_id=message_id,
            )
        )
        try:
            await self.store.apply(self.keys.meta, ops=ops, guards=guards)
        except GuardFailed:
            raise self._no_sender(sender_id) from None
        return message, len(live)

    async def inbox(self, agent: str) -> tuple[list[Message], list[Message]]:
        """(queued, in flight) messages of an agent (any reference), without consuming them.

        For the supervisor, ``queued`` also holds the mail it already received.
        """
        agent_id = await self.agents.resolve_id(agent)
        keys = [self.keys.inbox(agent_id), self.keys.inflight(agent_id)]
        if agent_id == SUPERVISOR_ID:
            keys.append(self.keys.mail)
        replies = await self.store.read_lists(keys)
        queued = self._parse(replies[0])
        inflight = self._parse(replies[1])
        if agent_id == SUPERVISOR_ID:
            queued = self._parse(replies[2]) + queued
        return queued, inflight

    def _parse(self, raws: list[str]) -> list[Message]:
        out = []
        for raw in raws:
            try:
                out.append(loads(Message, raw))
            except MalformedRecordError as exc:
                self.store.warnings.append(str(exc))
        return out

    # -- events ----------------------------------------------------------------------

    async def recent_events(self, count: int = 20, *, agent: str | None = None) -> list[Event]:
        """The most recent ``count`` events (optionally of one agent), oldest first."""
        return await self.store.events.recent(count, agent=agent)

    async def follow_events(
        self, *, since: str = "$", agent: str | None = None, reconnect: bool = True
    ) -> AsyncIterator[Event]:
        """Events after ``since`` (an id, or ``$`` for new ones), as they happen.

        Blocks on XREAD (no polling); each event is yielded once. With ``reconnect``
        (default) a dropped connection or a Redis restart is ridden out: it reconnects
        with backoff and resumes after the last event seen (see
        :meth:`EventStream.follow`); without it RedisUnavailableError ends it.
        Cancellable at any point; the connection is closed.
        """
        async for event in self.store.events.follow(since, reconnect=reconnect):
            if agent is None or event.agent == agent:
                yield event


def _encode(message: Message) -> str:
    """The message's JSON (the one encoding it gets), refused when over the size limit."""
    payload = dumps(message)
    size = len(payload)
    if not payload.isascii():
        check_text(payload, "the message")  # e.g. bytes that were not UTF-8 (API callers)
        # Characters never outnumber bytes: encode to count only when it could matter.
        if size * 4 > MAX_MESSAGE_BYTES:
            size = len(payload.encode())
    if size > MAX_MESSAGE_BYTES:
        raise InvalidInputError(f"Message is {size} bytes; the limit is {MAX_MESSAGE_BYTES} bytes.")
    return payload


_ = MessageType
