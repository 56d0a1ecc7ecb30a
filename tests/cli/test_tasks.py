"""tt assign, tasks, task show/complete/fail/cancel/current, backlog ..."""

from __future__ import annotations

import json
from functools import partial

from tests.cli.clihelp import ok, ok_json, parallel, user_error
from tinytown.model import MessageType, TaskAssign, TaskState
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.town import Town

DOCUMENTED_FIELDS = {
    "id", "description", "state", "assigned_to", "created_at", "updated_at",
    "completed_at", "result", "parent_id", "tags",
}  # fmt: skip


async def test_assign_list_and_tree(tt, town: Town) -> None:
    alice = await town.agents.spawn("alice")
    await town.agents.spawn("bob")
    parent = ok_json(
        tt("assign", "alice", "Build the API", "--tag", "api", "--tags", "backend,urgent", "--json")
    )
    raw = json.loads(await town.redis.execute("GET", f"tt:{town.name}:task:{parent['id']}"))
    assert DOCUMENTED_FIELDS <= raw.keys()
    assert (raw["state"], raw["assigned_to"], raw["tags"]) == (
        "assigned",
        alice.id,
        ["api", "backend", "urgent"],
    )
    assert raw["created_at"].endswith("Z") and raw["completed_at"] is None
    queued, _ = await town.messages.inbox(alice.id)
    assert [m.body for m in queued] == [TaskAssign(raw["id"])]

    out = ok(tt("assign", "bob", "Write the tests", "--parent", parent["id"][:6]))
    child_id = out.split()[2]
    assert out == f"Assigned task {child_id} to bob.\n" and len(child_id) == 8  # short ids
    assert (await town.tasks.resolve(child_id)).parent_id == parent["id"]

    lines = ok(tt("tasks")).splitlines()
    assert lines[0].split() == ["ID", "STATE", "AGENT", "TAGS", "DESCRIPTION"]
    assert lines[1].split() == [
        parent["id"][:8],
        "assigned",
        "alice",
        "api,backend,urgent",
        "Build",
        "the",
        "API",
    ]
    tree = ok(tt("tasks", "--tree")).splitlines()
    assert tree[2].startswith("  " + child_id[:8])  # indented under its parent

    filtered = ok_json(tt("tasks", "--state", "assigned", "--agent", "bob", "--json"))
    assert [t["id"][:8] for t in filtered] == [child_id]
    assert ok(tt("tasks", "--tag", "urgent")).count("\n") == 2  # header + the parent
    assert "unknown task state 'bogus'" in user_error(tt("tasks", "--state", "bogus"), 2)

    nobody, blank, no_parent = parallel(
        partial(tt, "assign", "nobody", "Do it"),
        partial(tt, "assign", "alice", "   "),
        # A prefix no uuid4 has (its version digit is always 4): never a match by chance.
        partial(tt, "assign", "bob", "x", "--parent", "ffffffff-ffff-f"),
    )
    assert "No agent named 'nobody'" in user_error(nobody)
    assert "non-empty description" in user_error(blank)
    assert "No task with id starting 'ffffffff-ffff-f'" in user_error(no_parent)
    assert len(await town.tasks.list()) == 2


async def test_task_show_and_finish(tt, town: Town) -> None:
    alice = await town.agents.spawn("alice")
    one = await town.tasks.assign("alice", "First", tags=["x"])
    two = await town.tasks.assign("alice", "Second")
    three = await town.backlog.add("Third")

    out = ok(tt("task", "show", one.id[:5]))
    assert out.splitlines()[:3] == [
        f"Task {one.id}",
        "  state:       assigned",
        "  description: First",
    ]
    assert "  assigned to: alice" in out and "  assigned by: supervisor" in out

    assert ok(tt("task", "complete", one.id, "--result", "done it")) == (
        f"Task {one.id[:8]} completed.\n"
    )
    msg = user_error(tt("task", "complete", one.id))
    assert msg == f"Task {one.id[:8]} is completed and cannot be completed."
    assert ok(tt("task", "fail", two.id, "--reason", "broke")) == f"Task {two.id[:8]} failed.\n"
    assert ok(tt("task", "cancel", three.id)) == f"Task {three.id[:8]} cancelled.\n"
    assert "No task with id starting 'abcdef'" in user_error(tt("task", "show", "abcdef"))

    shown = ok_json(tt("task", "show", one.id, "--json"))
    assert (shown["state"], shown["result"]) == ("completed", "done it")
    assert shown["completed_at"].endswith("Z")
    states = {t.description: t.state for t in await town.tasks.list()}
    assert states == {
        "First": TaskState.COMPLETED,
        "Second": TaskState.FAILED,
        "Third": TaskState.CANCELLED,
    }
    assert (await town.agents.get(alice.id)).tasks_completed == 1
    mail, _ = await town.messages.inbox(SUPERVISOR_ID)  # the assigner was told
    assert [m.type for m in mail] == [MessageType.TASK_DONE, MessageType.TASK_FAILED]


async def test_task_current(tt, tt_env: dict[str, str], town: Town) -> None:
    alice = await town.agents.spawn("alice")
    await town.agents.spawn("bob")
    task = await town.tasks.assign("alice", "Build it")
    assert ok(tt("task", "current", "alice")).startswith(f"Task {task.id}\n")
    assert ok(tt("task", "current", "bob")) == "bob has no current task.\n"
    msg = user_error(tt("task", "current"))
    assert msg == "No agent given and TT_AGENT_ID is not set."
    tt_env["TT_AGENT_ID"] = alice.id  # as in an agent's round
    assert ok_json(tt("task", "current", "--json"))["id"] == task.id


async def test_backlog(tt, town: Town) -> None:
    await town.agents.spawn("alice")
    bob = await town.agents.spawn("bob")
    first = ok_json(tt("backlog", "add", "Write docs", "--tag", "docs", "--json"))
    second = ok(tt("backlog", "add", "Fix bug")).split()[2]
    third = (await town.backlog.add("Refactor")).id

    lines = ok(tt("backlog", "list")).splitlines()
    assert [line.split()[0] for line in lines] == ["ID", first["id"][:8], second[:8], third[:8]]
    assert lines[1].split()[1:] == ["pending", "-", "docs", "Write", "docs"]
    assert ok(tt("backlog")).splitlines() == lines  # alone, it lists the backlog

    assert "No agent named 'ghost'" in user_error(tt("backlog", "claim", first["id"], "ghost"))
    assert len(await town.backlog.list()) == 3  # nothing was taken out
    assert ok(tt("backlog", "claim", first["id"][:6], "alice")) == (
        f"Task {first['id'][:8]} assigned to alice.\n"
    )
    assert ok(tt("backlog", "remove", second)) == (
        f"Removed task {second[:8]} from the backlog (cancelled).\n"
    )
    assert ok(tt("backlog", "assign-all", "bob")) == "Assigned 1 task to bob.\n"
    assert ok_json(tt("backlog", "list", "--json")) == []
    assert ok(tt("backlog")) == "The backlog is empty.\n"
    assert [t.id for t in await town.tasks.list(agent=bob.id)] == [third]
    assert (await town.tasks.resolve(second)).state is TaskState.CANCELLED
