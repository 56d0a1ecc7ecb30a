"""Messages: one envelope, a body per type, tagged on the wire by a top-level ``"type"``."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from tinytown.model.enums import MessageType, Priority
from tinytown.model.ids import new_id, now

#: Message bodies larger than this (in bytes of JSON) are refused: inboxes stay bounded.
MAX_MESSAGE_BYTES = 64 * 1024


@attrs.frozen
class TaskBody:
    """Free-text work for an agent (no task record)."""

    kind: ClassVar[MessageType] = MessageType.TASK
    description: str


@attrs.frozen
class TaskAssign:
    """A task record was assigned to the recipient."""

    kind: ClassVar[MessageType] = MessageType.TASK_ASSIGN
    task_id: str


@attrs.frozen
class TaskDone:
    kind: ClassVar[MessageType] = MessageType.TASK_DONE
    task_id: str
    result: str = ""


@attrs.frozen
class TaskFailed:
    kind: ClassVar[MessageType] = MessageType.TASK_FAILED
    task_id: str
    error: str = ""


@attrs.frozen
class Query:
    kind: ClassVar[MessageType] = MessageType.QUERY
    question: str


@attrs.frozen
class Informational:
    kind: ClassVar[MessageType] = MessageType.INFORMATIONAL
    summary: str


@attrs.frozen
class AckType:
    """What a confirmation confirms (Rust writes it as ``{"type": ..., "reason": ...}``)."""

    type: str = "acknowledged"
    reason: str | None = None

    @classmethod
    def from_text(cls, text: str) -> AckType:
        """Classify free text the way ``tt send --ack`` does."""
        lowered = text.strip().lower()
        if lowered.startswith("rejected"):
            reason = text.split(":", 1)[1].strip() if ":" in text else None
            return cls("rejected", reason or None)
        for word in ("received", "approved"):
            if lowered.startswith(word):
                return cls(word)
        if "thank" in lowered:
            return cls("thanks")
        return cls("acknowledged")


@attrs.frozen
class Confirmation:
    kind: ClassVar[MessageType] = MessageType.CONFIRMATION
    ack_type: AckType = AckType()


@attrs.frozen
class StatusRequest:
    kind: ClassVar[MessageType] = MessageType.STATUS_REQUEST


@attrs.frozen
class StatusResponse:
    kind: ClassVar[MessageType] = MessageType.STATUS_RESPONSE
    state: str
    current_task: str | None = None


@attrs.frozen
class Ping:
    kind: ClassVar[MessageType] = MessageType.PING


@attrs.frozen
class Pong:
    kind: ClassVar[MessageType] = MessageType.PONG


@attrs.frozen
class Shutdown:
    kind: ClassVar[MessageType] = MessageType.SHUTDOWN


@attrs.frozen
class Custom:
    kind: ClassVar[MessageType] = MessageType.CUSTOM
    kind_name: str = attrs.field(alias="kind_name")
    payload: Any = None


Body = (
    TaskBody
    | TaskAssign
    | TaskDone
    | TaskFailed
    | Query
    | Informational
    | Confirmation
    | StatusRequest
    | StatusResponse
    | Ping
    | Pong
    | Shutdown
    | Custom
)

BODY_CLASSES: dict[MessageType, type] = {
    cls.kind: cls
    for cls in (
        TaskBody,
        TaskAssign,
        TaskDone,
        TaskFailed,
        Query,
        Informational,
        Confirmation,
        StatusRequest,
        StatusResponse,
        Ping,
        Pong,
        Shutdown,
        Custom,
    )
}

#: Types that need the agent's CLI; the others are handled by the runtime or batched.
ACTIONABLE = frozenset({MessageType.TASK, MessageType.TASK_ASSIGN, MessageType.QUERY})


@attrs.frozen
class Message:
    """An envelope in an inbox list: ``{"id","from","to","type",...,"priority",...}``."""

    id: str
    sender: str
    recipient: str
    body: Body
    priority: Priority = Priority.NORMAL
    created_at: str = attrs.field(factory=now)
    correlation_id: str | None = None

    @classmethod
    def new(
        cls,
        sender: str,
        recipient: str,
        body: Body,
        *,
        priority: Priority = Priority.NORMAL,
        correlation_id: str | None = None,
    ) -> Message:
        return cls(new_id(), sender, recipient, body, priority, now(), correlation_id)

    @property
    def type(self) -> MessageType:
        return self.body.kind

    @property
    def actionable(self) -> bool:
        return self.type in ACTIONABLE

    @property
    def text(self) -> str:
        """A one-line human summary of the body."""
        b = self.body
        match b:
            case TaskBody(description=d):
                return d
            case TaskAssign(task_id=t):
                return f"task {t} assigned"
            case TaskDone(task_id=t, result=r):
                return f"task {t} done: {r}"
            case TaskFailed(task_id=t, error=e):
                return f"task {t} failed: {e}"
            case Query(question=q):
                return q
            case Informational(summary=s):
                return s
            case Confirmation(ack_type=a):
                return a.type + (f": {a.reason}" if a.reason else "")
            case StatusResponse(state=s, current_task=c):
                return f"state {s}" + (f", task {c}" if c else "")
            case Custom(kind_name=k, payload=p):
                return f"{k}: {p}"
        return self.type.value.replace("_", " ")
