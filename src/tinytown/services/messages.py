"""Messages: sending, broadcasting, reading inboxes, and the event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import trio

from tinytown.errors import InvalidInputError, MalformedRecordError, NotFoundError
from tinytown.model import (
    AckType,
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
from tinytown.services.tasks import current_sender
from tinytown.store.records import GuardFailed, Op, Store

#: Supervisor mail kept for ``tt inbox supervisor``.
MAIL_KEEP = 1000


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


def make_body(kind: str, text: str) -> Body:
    """The body for ``tt send`` flags: task (default), query, info, ack."""
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
        return await self.agents.resolve_id(sender) if sender else current_sender()

    async def send(
        self,
        to: str,
        body: Body,
        *,
        urgent: bool = False,
        sender: str | None = None,
        correlation_id: str | None = None,
    ) -> Message:
        """Put one message in the recipient's inbox (urgent ones at the head)."""
        guards: list[tuple[list[str], int]] = []
        if is_uuid(to) and to != SUPERVISOR_ID:
            # The common API case: check the agent exists inside the delivering script
            # itself, so a send is one round trip.
            recipient = to
            guards.append((["EXISTS", self.keys.agent(to)], 1))
        else:
            recipient = await self.agents.resolve_id(to)
        message = Message.new(
            await self.sender_id(sender),
            recipient,
            body,
            priority=Priority.URGENT if urgent else Priority.NORMAL,
            correlation_id=correlation_id,
        )
        _check_size(message)
        try:
            await self.store.apply(
                self.keys.meta, ops=self.store.deliver_ops(message), guards=guards
            )
        except GuardFailed:
            raise NotFoundError(f"No agent with id {to} in town {self.keys.town}.") from None
        return message

    async def broadcast(
        self, body: Body, *, urgent: bool = False, sender: str | None = None
    ) -> tuple[Message, int]:
        """One message (one id) into every live worker's inbox, all or none.

        Returns the message (addressed to the last recipient) and the number reached.
        """
        sender_id = await self.sender_id(sender)
        live = [a for a in await self.agents.list() if not a.state.terminal]
        message_id = new_id()
        priority = Priority.URGENT if urgent else Priority.NORMAL
        ops: list[Op] = []
        message = Message(message_id, sender_id, "*", body, priority)
        _check_size(message)
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
        await self.store.run_ops(ops)
        return message, len(live)

    async def inbox(self, agent: str) -> tuple[list[Message], list[Message]]:
        """(queued, in flight) messages of an agent (any reference), without consuming them.

        For the supervisor, ``queued`` also holds the mail it already received.
        """
        agent_id = await self.agents.resolve_id(agent)
        commands: list[list[str | int]] = [
            ["LRANGE", self.keys.inbox(agent_id), 0, -1],
            ["LRANGE", self.keys.inflight(agent_id), 0, -1],
        ]
        if agent_id == SUPERVISOR_ID:
            commands.append(["LRANGE", self.keys.mail, 0, -1])
        replies = await self.store.redis.pipeline(commands)
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
        out: list[Event] = []
        cursor = "+"
        while len(out) < count:
            batch = await self.store.redis.execute(
                "XREVRANGE", self.keys.events, cursor, "-", "COUNT", max(count * 4, 100)
            )
            if not batch:
                break
            for entry_id, flat in batch:
                event = Event(entry_id, dict(zip(flat[::2], flat[1::2], strict=True)))
                if agent is None or event.agent == agent:
                    out.append(event)
            cursor = "(" + batch[-1][0]
        return list(reversed(out[:count]))

    async def follow_events(
        self, *, since: str = "$", agent: str | None = None
    ) -> AsyncIterator[Event]:
        """Events after ``since`` (an id, or ``$`` for new ones), as they happen.

        Blocks on XREAD (no polling); each event is yielded once. Cancellable.
        """
        async with self.store.redis.dedicated() as conn:
            last = since
            if last == "$":
                reply = await conn.execute("XREVRANGE", self.keys.events, "+", "-", "COUNT", 1)
                last = reply[0][0] if reply else "0-0"
            while True:
                reply = await conn.execute(
                    "XREAD", "BLOCK", 30_000, "COUNT", 500, "STREAMS", self.keys.events, last
                )
                if not reply:
                    await trio.lowlevel.checkpoint()
                    continue
                for entry_id, flat in reply[0][1]:
                    last = entry_id
                    event = Event(entry_id, dict(zip(flat[::2], flat[1::2], strict=True)))
                    if agent is None or event.agent == agent:
                        yield event


def _check_size(message: Message) -> None:
    size = len(dumps(message).encode())
    if size > MAX_MESSAGE_BYTES:
        raise InvalidInputError(f"Message is {size} bytes; the limit is {MAX_MESSAGE_BYTES} bytes.")


_ = MessageType
