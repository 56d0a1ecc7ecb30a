"""The one converter, and JSON helpers built on it.

All records cross the Redis boundary here, so wire spellings live in one place:
lowercase enums, ``from``/``to`` for message endpoints, the message ``"type"`` tag,
Rust aliases (``in_flight``, ``forkedcontext``) accepted on read, unknown fields ignored.

The converter is a small one of our own over ``attrs`` metadata, not cattrs: importing
cattrs and generating its per-class code cost ~15-20 ms of every ``tt`` command (issue
14), for rules this short. Each record type's plan (its fields, their structure
functions) is made on first use, so a command pays only for the types it reads.
"""

from __future__ import annotations

import enum
import json
import threading
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from tinytown.errors import MalformedRecordError
from tinytown.model.enums import MessageType, Priority, SpawnMode, TaskState
from tinytown.model.message import BODY_CLASSES, AckType, Custom, Message

T = TypeVar("T")

Structure = Callable[[Any], Any]
Unstructure = Callable[[Any], Any]


class Converter:
    """Attrs records to plain JSON data and back.

    ``unstructure(obj)``: an attrs record becomes a dict of its fields in declaration
    order (each value unstructured), an enum its value, a list or tuple a list, a dict a
    dict; anything else is returned as it is. ``structure(data, type)``: the reverse,
    driven by the type: an attrs class from a dict by field name (missing fields with a
    default keep it, a missing required one raises ``KeyError``, unknown keys are
    ignored), ``str``/``int``/``float``/``bool`` and enums by calling the type,
    ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[K, V]``, ``Literal``, ``Any``.
    Hooks registered for a type replace these rules for it.
    """

    def __init__(self) -> None:
        self._structure_hooks: dict[Any, Callable[[Any, Any], Any]] = {}
        self._unstructure_hooks: dict[type, Unstructure] = {}
        self._structurers: dict[Any, Structure] = {}
        self._unstructurers: dict[type, Unstructure] = {}
        # Plans are made under a lock (a thread may read records while another makes one);
        # a type being made stands for itself in _building, seen only by its maker.
        self._lock = threading.RLock()
        self._building: dict[Any, Structure] = {}

    def register_structure_hook(self, tp: Any, hook: Callable[[Any, Any], Any]) -> None:
        self._structure_hooks[tp] = hook
        self._structurers.clear()

    def register_unstructure_hook(self, cls: type, hook: Unstructure) -> None:
        self._unstructure_hooks[cls] = hook
        self._unstructurers.clear()

    # -- to plain data ---------------------------------------------------------------------

    def unstructure(self, obj: Any) -> Any:
        cls = type(obj)
        fn = self._unstructurers.get(cls)
        if fn is None:
            fn = self._unstructurers[cls] = self._make_unstructurer(cls)
        return fn(obj)

    def _make_unstructurer(self, cls: type) -> Unstructure:
        for base in cls.__mro__:
            hook = self._unstructure_hooks.get(base)
            if hook is not None:
                return hook
        if cls in (str, int, float, bool, type(None)):
            return _identity
        if issubclass(cls, enum.Enum):
            return _enum_value
        if attrs.has(cls):
            names = tuple(f.name for f in attrs.fields(cls))
            un = self.unstructure
            return lambda obj: {name: un(getattr(obj, name)) for name in names}
        if issubclass(cls, (list, tuple)):
            return lambda obj: [self.unstructure(v) for v in obj]
        if issubclass(cls, (set, frozenset)):
            return lambda obj: cls(self.unstructure(v) for v in obj)
        if issubclass(cls, Mapping):
            return lambda obj: {self.unstructure(k): self.unstructure(v) for k, v in obj.items()}
        return _identity

    # -- from plain data -------------------------------------------------------------------

    def structure(self, data: Any, tp: Any) -> Any:
        return self.structurer(tp)(data)

    def structurer(self, tp: Any) -> Structure:
        """The function that structures plain data as ``tp`` (made once per type)."""
        fn = self._structurers.get(tp)
        if fn is not None:
            return fn
        with self._lock:
            fn = self._structurers.get(tp) or self._building.get(tp)
            if fn is None:
                # A type that contains itself finds this stand-in while it is made.
                self._building[tp] = lambda data: self._structurers[tp](data)
                try:
                    fn = self._make_structurer(tp)
                finally:
                    del self._building[tp]
                self._structurers[tp] = fn
        return fn

    def _make_structurer(self, tp: Any) -> Structure:
        hook = self._structure_hooks.get(tp)
        if hook is not None:
            return lambda data: hook(data, tp)
        if tp is Any or tp is object:
            return _identity
        if tp in (str, int, float, bool):
            return typing.cast(Structure, tp)
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Union or origin is types.UnionType:
            rest = [a for a in args if a is not type(None)]
            if len(rest) == 1 and len(args) == 2:
                inner = self.structurer(rest[0])
                if rest[0] in (str, int, float, bool):  # the common case, without a call
                    kind = rest[0]
                    return lambda data: data if data is None or type(data) is kind else kind(data)
                return lambda data: None if data is None else inner(data)
            raise TypeError(f"no structure rule for the union {tp!r}: register a hook")
        if origin is typing.Literal:
            allowed = frozenset(args)
            return lambda data: _literal(data, allowed)
        if isinstance(tp, type):
            if issubclass(tp, enum.Enum):
                return _enum_structurer(tp)
            if attrs.has(tp):
                return self._attrs_structurer(tp)
        container = origin or tp
        if container in (list, Sequence, typing.Sequence, set, frozenset):
            item = self.structurer(args[0]) if args else _identity
            abstract = container in (Sequence, typing.Sequence)
            make: Callable[[Any], Any] = list if abstract else container
            return lambda data: make(item(v) for v in data)
        if container is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                item = self.structurer(args[0])
                return lambda data: tuple(item(v) for v in data)
            if args:
                items = [self.structurer(a) for a in args]
                return lambda data: tuple(f(v) for f, v in zip(items, data, strict=True))
            return tuple
        if container in (dict, Mapping, typing.Mapping):
            key = self.structurer(args[0]) if args else _identity
            value = self.structurer(args[1]) if args else _identity
            return lambda data: {key(k): value(v) for k, v in data.items()}
        raise TypeError(f"no structure rule for {tp!r}")

    def _attrs_structurer(self, cls: type) -> Structure:
        attrs.resolve_types(cls)  # annotations are strings (from __future__ import annotations)
        fields = [f for f in attrs.fields(cls) if f.init]
        plan = [(f.name, f.alias or f.name, self.structurer(f.type)) for f in fields]
        required = [f.name for f in fields if f.default is attrs.NOTHING]

        def structure(data: Any) -> Any:
            for name in required:
                if name not in data:
                    raise KeyError(name)
            return cls(**{alias: fn(data[name]) for name, alias, fn in plan if name in data})

        return structure


def _identity(value: Any) -> Any:
    return value


def _enum_value(value: enum.Enum) -> Any:
    return value.value


def _enum_structurer(tp: type[enum.Enum]) -> Structure:
    """``tp(value)``, with the member looked up directly first (Enum's own call is slow
    for a record read 10,000 times by ``tt status``)."""
    members = tp._value2member_map_

    def structure(value: Any) -> Any:
        try:
            return members[value]
        except (KeyError, TypeError):  # not a value (or unhashable): the enum's own error
            return tp(value)

    return structure


def _literal(value: Any, allowed: frozenset[Any]) -> Any:
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {sorted(map(repr, allowed))}")
    return value


converter = Converter()
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


def _body_fields(body_cls: type) -> list[tuple[str, str, Structure]]:
    """(field name, wire name, structure function) of a message body class."""
    attrs.resolve_types(body_cls)
    return [
        (
            f.name,
            "kind" if body_cls is Custom and f.name == "kind_name" else f.name,
            converter.structurer(f.type),
        )
        for f in attrs.fields(body_cls)
    ]


_BODY_PLANS: dict[type, list[tuple[str, str, Structure]]] = {}


def _structure_message(data: Any, _: type) -> Message:
    body_cls = BODY_CLASSES[MessageType(data["type"])]
    plan = _BODY_PLANS.get(body_cls)
    if plan is None:
        plan = _BODY_PLANS[body_cls] = _body_fields(body_cls)
    fields = {name: fn(data[wire]) for name, wire, fn in plan if wire in data}
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


def dumps(record: object) -> str:
    """Serialise an attrs record to compact JSON."""
    return json.dumps(converter.unstructure(record), separators=(",", ":"), ensure_ascii=False)


def loads(cls: type[T], raw: str | bytes, *, where: str = "") -> T:
    """Read ``cls`` from JSON, raising :class:`MalformedRecordError` on any defect."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return typing.cast(T, converter.structure(data, cls))
    except Exception as exc:  # any defect of the data: one sentence, never a traceback
        name = cls.__name__.lower()
        place = f" at {where}" if where else ""
        raise MalformedRecordError(f"Malformed {name} JSON{place}: {_reason(exc)}.") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc) or type(exc).__name__
