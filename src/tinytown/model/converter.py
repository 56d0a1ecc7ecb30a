"""The one cattrs converter, and JSON helpers built on it.

All records cross the Redis boundary here, so wire spellings live in one place:
lowercase enums, ``from``/``to`` for message endpoints, the message ``"type"`` tag,
Rust aliases (``in_flight``, ``forkedcontext``) accepted on read, unknown fields ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TypeVar

import attrs
import cattrs

from tinytown.errors import MalformedRecordError
from tinytown.model.enums import MessageType, Priority, SpawnMode, TaskState
from tinytown.model.message import BODY_CLASSES, AckType, Custom, Message

T = TypeVar("T")

converter = cattrs.Converter()
converter.register_structure_hook(TaskState, lambda v, _: TaskState.parse(str(v)))
converter.register_structure_hook(SpawnMode, lambda v, _: SpawnMode.parse(str(v)))


def _structure_ack(value: Any, _: type) -> AckType:
    if isinstance(value, str):  # tolerate a bare string
        return AckType(value)
    return AckType(str(value.get("type", "acknowledged")), value.get("reason"))


converter.register_structure_hook(AckType, _structure_ack)
converter.register_unstructure_hook(
    AckType,
    lambda a: {"type": a.type} if a.reason is None else {"type": a.type, "reason": a.reason},
)

for _cls in BODY_CLASSES.values():
    attrs.resolve_types(_cls)  # the hooks below read field.type


def _unstructure_message(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"id": msg.id, "from": msg.sender, "to": msg.recipient}
    out["type"] = msg.type.value
    for field in attrs.fields(type(msg.body)):
        value = getattr(msg.body, field.name)
        out["kind" if field.name == "kind_name" else field.name] = converter.unstructure(value)
    out["priority"] = msg.priority.value
    out["created_at"] = msg.created_at
    out["correlation_id"] = msg.correlation_id
    return out


def _structure_message(data: Any, _: type) -> Message:
    body_cls = BODY_CLASSES[MessageType(data["type"])]
    fields: dict[str, Any] = {}
    for field in attrs.fields(body_cls):
        wire = "kind" if body_cls is Custom and field.name == "kind_name" else field.name
        if wire in data:
            fields[field.name] = converter.structure(data[wire], field.type)
    return Message(
        id=str(data["id"]),
        sender=str(data["from"]),
        recipient=str(data["to"]),
        body=body_cls(**fields),
        priority=Priority(str(data.get("priority") or "normal").lower()),
        created_at=str(data.get("created_at") or ""),
        correlation_id=data.get("correlation_id"),
    )


converter.register_unstructure_hook(Message, _unstructure_message)
converter.register_structure_hook(Message, _structure_message)


def warm(classes: Iterable[type]) -> None:
    """Build the structure and unstructure functions of ``classes`` now: cattrs builds
    each on first use (~5-10 ms of code generation), which a process that forks workers
    (the command server) does once for all of them."""
    for cls in classes:
        converter.get_structure_hook(cls)
        converter.get_unstructure_hook(cls)


def dumps(record: object) -> str:
    """Serialise an attrs record to compact JSON."""
    return json.dumps(converter.unstructure(record), separators=(",", ":"), ensure_ascii=False)


def loads(cls: type[T], raw: str | bytes, *, where: str = "") -> T:
    """Read ``cls`` from JSON, raising :class:`MalformedRecordError` on any defect."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return converter.structure(data, cls)
    except Exception as exc:  # cattrs raises many shapes of error: map them all here
        name = cls.__name__.lower()
        place = f" at {where}" if where else ""
        raise MalformedRecordError(f"Malformed {name} JSON{place}: {_reason(exc)}.") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        inner = exc.exceptions[0] if exc.exceptions else exc
        return _reason(inner)
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc) or type(exc).__name__
