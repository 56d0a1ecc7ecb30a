"""The JSON wire format of tasks, agents and messages (SPEC §2), read and written."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

import pytest

from tinytown.errors import MalformedRecordError, TinytownError
from tinytown.model import (
    AckType,
    Agent,
    AgentState,
    AgentType,
    Confirmation,
    Custom,
    Informational,
    Message,
    MessageType,
    Ping,
    Pong,
    Priority,
    Query,
    Shutdown,
    SpawnMode,
    StatusRequest,
    StatusResponse,
    Task,
    TaskAssign,
    TaskBody,
    TaskDone,
    TaskFailed,
    TaskState,
    dumps,
    loads,
    new_id,
    now,
)
from tinytown.model.ids import parse_time
from tinytown.model.message import BODY_CLASSES

TASK_FIELDS = {
    "id",
    "description",
    "state",
    "assigned_to",
    "created_at",
    "updated_at",
    "completed_at",
    "result",
    "parent_id",
    "tags",
}
AGENT_FIELDS = {
    "id",
    "name",
    "nickname",
    "role_id",
    "agent_type",
    "state",
    "cli",
    "current_task",
    "parent_agent_id",
    "spawn_mode",
    "current_scope",
    "created_at",
    "last_heartbeat",
    "tasks_completed",
}
#: ``...T12:34:56Z`` or ``...T12:34:56.123456Z``: UTC RFC 3339 with a ``Z`` suffix.
STAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def wire(record: object) -> dict[str, Any]:
    text = dumps(record)
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


def assert_stamp(value: object) -> None:
    assert isinstance(value, str) and STAMP_RE.match(value), value
    assert parse_time(value).tzinfo is not None


def assert_uuid4(value: object) -> None:
    assert isinstance(value, str) and UUID4_RE.match(value), value
    assert uuid.UUID(value).version == 4


# -- ids and timestamps --------------------------------------------------------------------


def test_new_id_is_lowercase_hyphenated_uuid4() -> None:
    ids = {new_id() for _ in range(50)}
    assert len(ids) == 50
    for value in ids:
        assert_uuid4(value)
        assert value == value.lower()


def test_now_is_utc_with_z() -> None:
    stamp = now()
    assert_stamp(stamp)
    moment = parse_time(stamp)
    assert abs((dt.datetime.now(dt.UTC) - moment).total_seconds()) < 5


# -- tasks ---------------------------------------------------------------------------------


def test_task_json_has_the_documented_fields() -> None:
    task = Task.new("write the docs", tags=["docs", "urgent"])
    data = wire(task)
    assert TASK_FIELDS <= set(data)
    # Extras are allowed, but nothing may be renamed away from the documented names.
    assert set(data) - TASK_FIELDS <= {
        "started_at",
        "attempts",
        "assigned_by",
        "plan_id",
        "max_attempts",
        "usage",
        "commits",
    }
    assert data["id"] == task.id
    assert data["description"] == "write the docs"
    assert data["state"] == "pending"
    assert data["assigned_to"] is None
    assert data["completed_at"] is None
    assert data["result"] is None
    assert data["parent_id"] is None
    assert data["tags"] == ["docs", "urgent"]
    assert_uuid4(data["id"])
    assert_stamp(data["created_at"])
    assert_stamp(data["updated_at"])


def test_task_json_after_completion() -> None:
    task = Task.new("x").transition("assign", assigned_to=new_id()).transition("start")
    done = task.transition("complete", result="ok")
    data = wire(done)
    assert data["state"] == "completed"
    assert data["result"] == "ok"
    assert_stamp(data["completed_at"])
    assert_stamp(data["updated_at"])
    assert_stamp(data["started_at"])
    assert data["attempts"] == 1


@pytest.mark.parametrize("state", list(TaskState))
def test_task_state_serialises_lowercase(state: TaskState) -> None:
    data = wire(Task(id=new_id(), description="x", state=state))
    assert data["state"] == state.value
    assert data["state"] == data["state"].lower()
    assert loads(Task, json.dumps(data)).state is state


def test_task_round_trip() -> None:
    task = Task.new("round trip ✓", tags=("a", "b"), parent_id=new_id(), plan_id="p1")
    task = task.transition("assign", assigned_to=new_id(), assigned_by="supervisor")
    assert loads(Task, dumps(task)) == task


# -- agents --------------------------------------------------------------------------------


def make_agent(**changes: Any) -> Agent:
    return Agent(id=new_id(), name="worker-1", nickname="Dorothy", cli="claude", **changes)


def test_agent_json_has_the_documented_fields() -> None:
    agent = make_agent(role_id="reviewer")
    data = wire(agent)
    assert AGENT_FIELDS <= set(data)
    assert set(data) - AGENT_FIELDS <= {
        "rounds_completed",
        "max_rounds",
        "state_reason",
        "started_at",
        "session_id",
        "usage",
        "budget",
        "worktree",
        "branch",
    }
    assert data["name"] == "worker-1"
    assert data["nickname"] == "Dorothy"
    assert data["role_id"] == "reviewer"
    assert data["agent_type"] == "worker"
    assert data["state"] == "starting"
    assert data["cli"] == "claude"
    assert data["spawn_mode"] == "fresh"
    assert data["tasks_completed"] == 0
    assert data["current_task"] is None
    assert data["parent_agent_id"] is None
    assert data["current_scope"] is None
    assert_uuid4(data["id"])
    assert_stamp(data["created_at"])
    assert_stamp(data["last_heartbeat"])


@pytest.mark.parametrize("state", list(AgentState))
def test_agent_state_serialises_lowercase(state: AgentState) -> None:
    data = wire(make_agent(state=state))
    assert data["state"] == state.value == state.value.lower()
    assert loads(Agent, json.dumps(data)).state is state


@pytest.mark.parametrize(
    ("mode", "text"),
    [
        (SpawnMode.FRESH, "fresh"),
        (SpawnMode.FORKED_CONTEXT, "forkedcontext"),
        (SpawnMode.RESUMED, "resumed"),
    ],
)
def test_spawn_mode_wire_spelling(mode: SpawnMode, text: str) -> None:
    data = wire(make_agent(spawn_mode=mode, agent_type=AgentType.SUPERVISOR))
    assert data["spawn_mode"] == text
    assert data["agent_type"] == "supervisor"
    assert loads(Agent, json.dumps(data)).spawn_mode is mode


def test_agent_round_trip() -> None:
    agent = make_agent(
        role_id="tester",
        state=AgentState.WORKING,
        current_task=new_id(),
        parent_agent_id=new_id(),
        spawn_mode=SpawnMode.FORKED_CONTEXT,
        current_scope="src/",
        tasks_completed=7,
        max_rounds=3,
    )
    assert loads(Agent, dumps(agent)) == agent


# -- messages ------------------------------------------------------------------------------

TASK_ID = "4b6c1b0e-8f43-4a57-9d2e-0c7f3a1e5b21"
ALL_BODIES: list[tuple[object, dict[str, Any]]] = [
    (TaskBody("do the thing"), {"description": "do the thing"}),
    (TaskAssign(TASK_ID), {"task_id": TASK_ID}),
    (TaskDone(TASK_ID, "all good"), {"task_id": TASK_ID, "result": "all good"}),
    (TaskFailed(TASK_ID, "boom"), {"task_id": TASK_ID, "error": "boom"}),
    (Query("why?"), {"question": "why?"}),
    (Informational("fyi"), {"summary": "fyi"}),
    (
        Confirmation(AckType("rejected", "too big")),
        {"ack_type": {"type": "rejected", "reason": "too big"}},
    ),
    (StatusRequest(), {}),
    (StatusResponse("working", TASK_ID), {"state": "working", "current_task": TASK_ID}),
    (Ping(), {}),
    (Pong(), {}),
    (Shutdown(), {}),
    (
        Custom("review", {"files": ["a.py"], "n": 2}),
        {"kind": "review", "payload": {"files": ["a.py"], "n": 2}},
    ),
]


def test_all_thirteen_types_are_covered() -> None:
    assert len(ALL_BODIES) == 13
    assert {type(body) for body, _ in ALL_BODIES} == set(BODY_CLASSES.values())
    assert {body.kind for body, _ in ALL_BODIES} == set(MessageType)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "fields"), ALL_BODIES, ids=[type(b).__name__ for b, _ in ALL_BODIES]
)
def test_message_round_trip(body: Any, fields: dict[str, Any]) -> None:
    sender, recipient = new_id(), new_id()
    msg = Message.new(sender, recipient, body, priority=Priority.HIGH, correlation_id="c-1")
    data = wire(msg)
    assert data["type"] == body.kind.value
    assert data["from"] == sender
    assert data["to"] == recipient
    assert data["priority"] == "high"
    assert data["correlation_id"] == "c-1"
    assert_uuid4(data["id"])
    assert_stamp(data["created_at"])
    # Variant fields sit at the top level, under their wire names.
    for name, value in fields.items():
        assert data[name] == value
    expected_keys = {"id", "from", "to", "type", "priority", "created_at", "correlation_id"}
    assert set(data) == expected_keys | set(fields)
    for internal in ("sender", "recipient", "body", "kind_name"):
        assert internal not in data
    assert loads(Message, dumps(msg)) == msg


def test_custom_message_uses_wire_key_kind() -> None:
    raw = json.dumps(
        {
            "id": new_id(),
            "from": "a",
            "to": "b",
            "type": "custom",
            "kind": "deploy",
            "payload": [1, "two", None],
            "priority": "normal",
            "created_at": now(),
            "correlation_id": None,
        }
    )
    msg = loads(Message, raw)
    assert msg.body == Custom("deploy", [1, "two", None])
    assert msg.type is MessageType.CUSTOM


def test_confirmation_ack_without_reason() -> None:
    msg = Message.new("a", "b", Confirmation(AckType("received")))
    assert wire(msg)["ack_type"] == {"type": "received"}
    assert loads(Message, dumps(msg)).body == Confirmation(AckType("received"))


def test_confirmation_bare_string_ack_accepted_on_read() -> None:
    raw = {"id": new_id(), "from": "a", "to": "b", "type": "confirmation", "ack_type": "approved"}
    msg = loads(Message, json.dumps(raw))
    assert msg.body == Confirmation(AckType("approved", None))


def test_message_optional_envelope_fields_default() -> None:
    raw = {"id": new_id(), "from": "a", "to": "b", "type": "ping"}
    msg = loads(Message, json.dumps(raw))
    assert msg.body == Ping()
    assert msg.priority is Priority.NORMAL
    assert msg.correlation_id is None
    assert msg.sender == "a" and msg.recipient == "b"


@pytest.mark.parametrize("priority", list(Priority))
def test_priority_lowercase(priority: Priority) -> None:
    msg = Message.new("a", "b", Ping(), priority=priority)
    assert wire(msg)["priority"] == priority.value == priority.value.lower()
    assert loads(Message, dumps(msg)).priority is priority


# -- reading what the Rust tool writes -----------------------------------------------------

RUST_TASK = {
    "id": "9f0e8c1a-2b3d-4e5f-8a6b-7c8d9e0f1a2b",
    "description": "Fix the login bug",
    "state": "in_flight",
    "assigned_to": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    "created_at": "2024-05-01T10:20:30.123456789+00:00",
    "updated_at": "2024-05-01T10:25:00Z",
    "completed_at": None,
    "result": None,
    "parent_id": None,
    "tags": ["backend"],
    "rust_only_field": {"nested": True},
}


def test_rust_task_in_flight_reads_as_running() -> None:
    task = loads(Task, json.dumps(RUST_TASK))
    assert task.state is TaskState.RUNNING
    assert task.tags == ("backend",)
    assert task.assigned_to == RUST_TASK["assigned_to"]
    # Rust timestamps (offset, nanoseconds) are readable and mean the same instant.
    created = parse_time(task.created_at)
    assert created == dt.datetime(2024, 5, 1, 10, 20, 30, 123456, tzinfo=dt.UTC)
    assert parse_time(task.updated_at) == dt.datetime(2024, 5, 1, 10, 25, tzinfo=dt.UTC)
    # Written back with our spelling of the state.
    assert wire(task)["state"] == "running"


@pytest.mark.parametrize("text", ["in_flight", "IN_FLIGHT", "running", "Running"])
def test_task_state_aliases(text: str) -> None:
    assert loads(Task, json.dumps({**RUST_TASK, "state": text})).state is TaskState.RUNNING


def test_rust_agent_reads() -> None:
    raw = {
        "id": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "name": "backend",
        "nickname": "Helen",
        "role_id": None,
        "agent_type": "worker",
        "state": "idle",
        "cli": "claude",
        "current_task": None,
        "parent_agent_id": "00000000-0000-0000-0000-000000000001",
        "spawn_mode": "forkedcontext",
        "current_scope": None,
        "created_at": "2024-05-01T10:20:30.123456789+00:00",
        "last_heartbeat": "2024-05-01T10:21:00.000000001Z",
        "tasks_completed": 4,
        "something_new": [1, 2, 3],
    }
    agent = loads(Agent, json.dumps(raw))
    assert agent.spawn_mode is SpawnMode.FORKED_CONTEXT
    assert agent.state is AgentState.IDLE
    assert agent.agent_type is AgentType.WORKER
    assert agent.tasks_completed == 4
    assert parse_time(agent.last_heartbeat) == dt.datetime(2024, 5, 1, 10, 21, tzinfo=dt.UTC)
    assert "something_new" not in wire(agent)


@pytest.mark.parametrize("text", ["forkedcontext", "forked_context", "forked-context"])
def test_spawn_mode_aliases(text: str) -> None:
    raw = {"id": new_id(), "name": "a", "nickname": "Ann", "cli": "c", "spawn_mode": text}
    assert loads(Agent, json.dumps(raw)).spawn_mode is SpawnMode.FORKED_CONTEXT


def test_unknown_fields_are_ignored_on_messages() -> None:
    raw = {
        "id": new_id(),
        "from": "a",
        "to": "b",
        "type": "task_assign",
        "task_id": TASK_ID,
        "priority": "urgent",
        "created_at": "2024-05-01T10:20:30.123456789+00:00",
        "correlation_id": None,
        "trace": {"x": 1},
    }
    msg = loads(Message, json.dumps(raw))
    assert msg.body == TaskAssign(TASK_ID)
    assert msg.priority is Priority.URGENT


# -- malformed records ---------------------------------------------------------------------

GOOD_TASK = {"id": new_id(), "description": "d"}
GOOD_AGENT = {"id": new_id(), "name": "a", "nickname": "Ann", "cli": "c"}
GOOD_MESSAGE = {"id": new_id(), "from": "a", "to": "b", "type": "query", "question": "q"}


def test_good_minimal_records_load() -> None:
    """The baselines of the malformed cases below are themselves valid."""
    assert loads(Task, json.dumps(GOOD_TASK)).state is TaskState.PENDING
    assert loads(Agent, json.dumps(GOOD_AGENT)).state is AgentState.STARTING
    assert loads(Message, json.dumps(GOOD_MESSAGE)).body == Query("q")


def _without(data: dict[str, Any], key: str) -> str:
    return json.dumps({k: v for k, v in data.items() if k != key})


MALFORMED: list[tuple[type, str | bytes, str]] = [
    (Task, "not json at all", "task"),
    (Task, b"\xff\xfe", "task"),
    (Task, "", "task"),
    (Task, "[1, 2]", "task"),
    (Task, '"a string"', "task"),
    (Task, "null", "task"),
    (Task, _without(GOOD_TASK, "description"), "task"),
    (Task, _without(GOOD_TASK, "id"), "task"),
    (Task, json.dumps({**GOOD_TASK, "state": "bogus"}), "task"),
    (Task, json.dumps({**GOOD_TASK, "state": None}), "task"),
    (Agent, "{", "agent"),
    (Agent, "42", "agent"),
    (Agent, _without(GOOD_AGENT, "name"), "agent"),
    (Agent, json.dumps({**GOOD_AGENT, "state": "sleeping"}), "agent"),
    (Agent, json.dumps({**GOOD_AGENT, "agent_type": "boss"}), "agent"),
    (Agent, json.dumps({**GOOD_AGENT, "spawn_mode": "cloned"}), "agent"),
    (Message, "nope", "message"),
    (Message, "[]", "message"),
    (Message, _without(GOOD_MESSAGE, "type"), "message"),
    (Message, _without(GOOD_MESSAGE, "from"), "message"),
    (Message, _without(GOOD_MESSAGE, "question"), "message"),
    (Message, json.dumps({**GOOD_MESSAGE, "type": "telegram"}), "message"),
    (Message, json.dumps({**GOOD_MESSAGE, "priority": "whenever"}), "message"),
]


@pytest.mark.parametrize(("cls", "raw", "kind"), MALFORMED)
def test_malformed_json_raises_malformed_record_error(cls: type, raw: str, kind: str) -> None:
    with pytest.raises(MalformedRecordError) as info:
        loads(cls, raw, where="tt:t:x:1")
    message = str(info.value)
    assert isinstance(info.value, TinytownError)
    assert f"{kind} json" in message.lower()
    assert "tt:t:x:1" in message
    # One clear sentence, not a multi-line cattrs dump.
    assert "\n" not in message


def test_malformed_names_the_missing_field() -> None:
    with pytest.raises(MalformedRecordError, match="description"):
        loads(Task, _without(GOOD_TASK, "description"))
