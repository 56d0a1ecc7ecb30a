"""Every tool through the SDK's own client (in-process server), checked in Redis through
the services: identity rules, errors as tool errors, spawn gating."""

from __future__ import annotations

from typing import Any

import pytest

from tests.townhall.conftest import Connect, data, error
from tinytown.model import MessageType, TaskState
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.messages import make_body
from tinytown.services.town import Town

AGENT_TOOLS = {
    "town_status",
    "list_tasks",
    "get_task",
    "complete_task",
    "fail_task",
    "send_message",
    "read_inbox",
    "backlog_add",
    "backlog_claim",
}
SUPERVISOR_TOOLS = {"assign", "interrupt", "resume", "close", "kill", "broadcast"}


async def test_tool_lists_follow_identity_and_allow_spawn(town: Town, hall: Connect) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    async with hall(ann) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == AGENT_TOOLS
    complete = tools["complete_task"]
    assert complete.description and "only complete tasks assigned to you" in complete.description
    assert complete.input_schema["required"] == ["task_id", "result"]
    assert complete.input_schema["properties"]["result"]["description"]
    send = tools["send_message"].input_schema["properties"]
    assert send["kind"]["enum"] == ["info", "task", "query"] and send["kind"]["default"] == "info"
    async with hall(ann, allow_spawn=True) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == AGENT_TOOLS | {"spawn_helper"}
    async with hall(None) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == AGENT_TOOLS | SUPERVISOR_TOOLS


async def test_complete_and_fail_only_own_tasks(town: Town, hall: Connect) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    await town.spawn_agent("bob")
    mine = await town.tasks.assign("ann", "write the parser")
    theirs = await town.tasks.assign("bob", "write the lexer")
    other = await town.tasks.assign("ann", "write the docs")
    async with hall(ann) as client:
        refused = error(
            await client.call_tool("complete_task", {"task_id": theirs.id, "result": "x"})
        )
        assert "not to ann" in refused and "only complete its own" in refused
        refused = error(
            await client.call_tool("fail_task", {"task_id": theirs.id[:8], "reason": "x"})
        )
        assert "assigned to another agent" in refused and "only fail its own" in refused
        done = data(
            await client.call_tool("complete_task", {"task_id": mine.id, "result": "parsed"})
        )
        assert done == {"id": mine.id, "state": "completed"}
        failed = data(
            await client.call_tool("fail_task", {"task_id": other.id[:8], "reason": "no time"})
        )
        assert failed["state"] == "failed"
        again = error(await client.call_tool("complete_task", {"task_id": mine.id, "result": "x"}))
        assert "completed" in again  # a finished task: the model's one sentence
    assert (await town.tasks.get(theirs.id)).state is TaskState.ASSIGNED  # untouched
    completed = await town.tasks.get(mine.id)
    assert completed.state is TaskState.COMPLETED and completed.result == "parsed"
    assert (await town.tasks.get(other.id)).result == "no time"
    assert (await town.agents.get(ann.id)).tasks_completed == 1
    queued, _ = await town.messages.inbox(SUPERVISOR_ID)  # the assigner was told, by ann
    notices = [m for m in queued if m.type in (MessageType.TASK_DONE, MessageType.TASK_FAILED)]
    assert {(m.type, m.sender) for m in notices} == {
        (MessageType.TASK_DONE, ann.id),
        (MessageType.TASK_FAILED, ann.id),
    }


async def test_send_message_signs_as_the_agent(town: Town, hall: Connect) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    bob = await (await town.spawn_agent("bob", role="tester")).state()
    cy = await (await town.spawn_agent("cy", role="tester")).state()
    async with hall(ann) as client:
        data(await client.call_tool("send_message", {"to": "bob", "text": "fyi one"}))
        data(await client.call_tool("send_message", {"to": "bob", "text": "now!", "urgent": True}))
        sent = data(
            await client.call_tool(
                "send_message", {"to": "role:tester", "text": "test it", "kind": "task"}
            )
        )
        assert sorted(sent["recipients"]) == ["bob", "cy"]
        data(
            await client.call_tool(
                "send_message", {"to": "supervisor", "text": "why?", "kind": "query"}
            )
        )
        everyone = data(await client.call_tool("send_message", {"to": "all", "text": "hello"}))
        assert everyone["recipients"] == 3
        assert "No agent named" in error(
            await client.call_tool("send_message", {"to": "zed", "text": "x"})
        )
        assert "role 'nobody'" in error(
            await client.call_tool("send_message", {"to": "role:nobody", "text": "x"})
        )
        bad = await client.call_tool("send_message", {"to": "bob", "text": "x", "kind": "shout"})
        assert bad.is_error  # the schema refuses it; nothing is sent
    bob_inbox, _ = await town.messages.inbox(bob.id)
    assert [(m.text, m.type.value) for m in bob_inbox] == [
        ("now!", "informational"),  # urgent: at the head
        ("fyi one", "informational"),
        ("test it", "task"),
        ("hello", "informational"),
    ]
    assert {m.sender for m in bob_inbox} == {ann.id}
    cy_inbox, _ = await town.messages.inbox(cy.id)
    assert [m.text for m in cy_inbox] == ["test it", "hello"]
    mail, _ = await town.messages.inbox(SUPERVISOR_ID)
    assert [(m.type, m.sender) for m in mail] == [(MessageType.QUERY, ann.id)]


async def test_read_inbox_takes_notes_and_leaves_work(town: Town, hall: Connect) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    await town.spawn_agent("bob")
    await town.messages.send("ann", make_body("info", "note 1"), sender="bob")
    await town.messages.send("ann", make_body("task", "do this"), sender="bob")
    await town.messages.send("ann", make_body("query", "and this?"))
    await town.messages.send("ann", make_body("info", "note 2"))
    async with hall(ann) as client:
        first = data(await client.call_tool("read_inbox", {"limit": 1}))["messages"]
        assert [(m["text"], m["from"]) for m in first] == [("note 1", "bob")]
        rest = data(await client.call_tool("read_inbox", {}))["messages"]
        assert [(m["text"], m["from"]) for m in rest] == [("note 2", "supervisor")]
        assert data(await client.call_tool("read_inbox", {}))["messages"] == []
    queued, _ = await town.messages.inbox(ann.id)
    assert [m.text for m in queued] == ["do this", "and this?"]  # work stays for the runtime


async def test_backlog_add_and_claim(town: Town, hall: Connect) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    bob = await (await town.spawn_agent("bob")).state()
    async with hall(ann) as client:
        added = data(
            await client.call_tool("backlog_add", {"description": "fix CI", "tags": ["ci"]})
        )
        assert added["state"] == "pending"
        claimed = data(await client.call_tool("backlog_claim", {"task_id": added["id"]}))
        assert claimed == {"id": added["id"], "state": "assigned", "assigned_to": "ann"}
    async with hall(bob) as client:
        late = error(await client.call_tool("backlog_claim", {"task_id": added["id"]}))
        assert "not waiting in the backlog" in late
    task = await town.tasks.get(added["id"])
    assert task.assigned_to == ann.id and task.assigned_by == ann.id and task.tags == ("ci",)
    inbox, _ = await town.messages.inbox(ann.id)
    assert [m.type for m in inbox] == [MessageType.TASK_ASSIGN]
    async with hall(None) as client:
        assert "acts for the calling agent" in error(
            await client.call_tool("backlog_claim", {"task_id": added["id"]})
        )


async def test_reading_tools(town: Town, hall: Connect) -> None:
    ann = await (await town.spawn_agent("ann", role="dev")).state()
    await town.spawn_agent("bob")
    one = await town.tasks.assign("ann", "first", tags=["x"])
    await town.tasks.assign("bob", "second")
    await town.backlog.add("third")
    async with hall(ann) as client:
        status = data(await client.call_tool("town_status", {}))
        assert status["you"] == "ann" and status["running"] is False
        assert [(a["name"], a["role"]) for a in status["agents"]] == [
            ("ann", "dev"),
            ("bob", "worker"),
        ]
        assert status["open_tasks"] == {"assigned": 2, "pending": 1}
        mine = data(await client.call_tool("list_tasks", {"mine": True}))
        assert [t["description"] for t in mine["tasks"]] == ["first"]
        assert mine["tasks"][0]["assigned_to"] == "ann"
        tagged = data(await client.call_tool("list_tasks", {"tag": "x"}))["tasks"]
        assert [t["id"] for t in tagged] == [one.id]
        pending = data(await client.call_tool("list_tasks", {"state": "pending"}))["tasks"]
        assert [t["description"] for t in pending] == ["third"]
        last = data(await client.call_tool("list_tasks", {"limit": 1}))
        assert last["total"] == 3 and [t["description"] for t in last["tasks"]] == ["third"]
        shown = data(await client.call_tool("get_task", {"task_id": one.id[:6]}))
        assert shown["id"] == one.id and shown["assigned_by_name"] == "supervisor"
        assert shown["assigned_to_name"] == "ann" and shown["state"] == "assigned"
        assert "No task with id starting" in error(
            # a prefix no uuid4 has (its version digit is always 4): never a match by chance
            await client.call_tool("get_task", {"task_id": "ffffffff-ffff-f"})
        )
        assert "not a task id" in error(await client.call_tool("get_task", {"task_id": "zz"}))
    async with hall(None) as client:
        assert "acts for the calling agent" in error(
            await client.call_tool("list_tasks", {"mine": True})
        )


async def test_spawn_helper_sets_the_parent_and_obeys_the_setting(
    town: Town, hall: Connect
) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    town.config.set("mcp.allow_spawn", "true")
    town.config.save()
    async with hall(ann, allow_spawn=True) as client:
        made = data(await client.call_tool("spawn_helper", {"name": "helper", "role": "tester"}))
        helper = await town.agents.get(made["id"])
        assert helper.parent_agent_id == ann.id and helper.role_id == "tester"
        assert "already exists" in error(await client.call_tool("spawn_helper", {"name": "helper"}))
        # the setting is read again at each call: turning it off stops the next spawn
        town.config.set("mcp.allow_spawn", "false")
        town.config.save()
        refused = error(await client.call_tool("spawn_helper", {"name": "helper2"}))
        assert "allow_spawn = false" in refused
    assert [a.name for a in await town.agents.list()] == ["ann", "helper"]
    async with hall(ann) as client:
        unknown = await client.call_tool("spawn_helper", {"name": "x"})
        assert unknown.is_error  # not offered at all when the town does not allow it


async def test_supervisor_tools(town: Town, hall: Connect) -> None:
    await town.spawn_agent("ann")
    bob = await (await town.spawn_agent("bob")).state()
    async with hall(None) as client:
        made = data(
            await client.call_tool(
                "assign", {"agent": "ann", "description": "build", "tags": ["b"]}
            )
        )
        task = await town.tasks.get(made["id"])
        assert task.state is TaskState.ASSIGNED and task.assigned_by == SUPERVISOR_ID
        paused = data(await client.call_tool("interrupt", {"agent": "ann"}))
        assert paused["state"] == "paused" and paused["applied_by_running_town"] is False
        assert data(await client.call_tool("resume", {"agent": "ann"}))["state"] == "idle"
        assert "not paused" in error(await client.call_tool("resume", {"agent": "ann"}))
        assert data(await client.call_tool("close", {"agent": "bob"}))["state"] == "cold"
        assert data(await client.call_tool("kill", {"agent": "ann"}))["state"] == "stopped"
        assert "already stopped" in error(await client.call_tool("kill", {"agent": "ann"}))
        sent = data(await client.call_tool("broadcast", {"text": "standup", "urgent": True}))
        assert sent["recipients"] == 0  # nobody live any more
    assert (await town.tasks.get(made["id"])).state is TaskState.PENDING  # the kill gave it back
    assert (await town.agents.get(bob.id)).state.value == "cold"


async def test_a_name_cached_for_a_pruned_agent_reaches_its_successor(
    town: Town, hall: Connect
) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    await town.spawn_agent("bob")
    async with hall(ann) as client:
        data(await client.call_tool("send_message", {"to": "bob", "text": "first"}))
        await town.lifecycle.kill("bob")
        await town.messages.inbox("bob")
        assert [a.name for a in await town.lifecycle.prune()] == ["bob"]
        new_bob = await (await town.spawn_agent("bob")).state()
        data(await client.call_tool("send_message", {"to": "bob", "text": "second"}))
    queued, _ = await town.messages.inbox(new_bob.id)
    assert [m.text for m in queued] == ["second"]


async def test_round_trips_per_call(
    town: Town, hall: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool call costs one or two Redis round trips, not a process: counted at the
    client, each tool with its effect checked (a tool that did less would be cheaper)."""
    ann = await (await town.spawn_agent("ann")).state()
    bob = await (await town.spawn_agent("bob", role="tester")).state()
    await town.spawn_agent("cy", role="tester")
    done = await town.tasks.assign("ann", "count me")
    failed = await town.tasks.assign("ann", "fail me")
    waiting = await town.backlog.add("claim me")
    await town.messages.send("ann", make_body("info", "a note"))
    trips: list[str] = []
    execute, pipeline = town.redis.execute, town.redis.pipeline

    async def counted_execute(*args: Any, **kwargs: Any) -> Any:
        if args[0] not in ("EVALSHA", "EVAL"):  # a script's call, counted by run_script
            trips.append(str(args[0]))
        return await execute(*args, **kwargs)

    async def counted_pipeline(commands: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append("pipeline")
        return await pipeline(commands, *args, **kwargs)

    async def counted_script(*args: Any, **kwargs: Any) -> Any:
        trips.append("script")
        return await run_script(*args, **kwargs)

    run_script = town.redis.run_script
    monkeypatch.setattr(town.redis, "execute", counted_execute)
    monkeypatch.setattr(town.redis, "pipeline", counted_pipeline)
    monkeypatch.setattr(town.redis, "run_script", counted_script)
    async with hall(ann) as client:
        await client.call_tool("town_status", {})  # fills the name cache
        for tool, arguments, expected in (
            ("town_status", {}, 2),
            ("get_task", {"task_id": done.id}, 1),
            ("get_task", {"task_id": done.id[:8]}, 2),
            ("list_tasks", {"mine": True}, 2),
            ("send_message", {"to": "bob", "text": "hi"}, 1),
            ("send_message", {"to": "supervisor", "text": "hi"}, 1),
            ("send_message", {"to": "role:tester", "text": "hi"}, 2),
            ("send_message", {"to": "all", "text": "hi"}, 2),
            ("read_inbox", {}, 2),
            ("backlog_add", {"description": "later"}, 1),
            ("backlog_claim", {"task_id": waiting.id[:8]}, 2),
            # The task and ann's record are as this process last saw them (store/known.py):
            # the write goes straight out, checked by its compare-and-set.
            ("complete_task", {"task_id": done.id, "result": "ok"}, 1),
            ("fail_task", {"task_id": failed.id[:8], "reason": "no"}, 2),
        ):
            trips.clear()
            data(await client.call_tool(tool, arguments))
            assert len(trips) == expected, (tool, arguments, trips)
    assert (await town.tasks.get(done.id)).state is TaskState.COMPLETED
    assert (await town.tasks.get(failed.id)).state is TaskState.FAILED
    assert (await town.tasks.get(waiting.id)).assigned_to == ann.id
    assert (await town.agents.get(ann.id)).tasks_completed == 1  # counted in the same step
    bob_inbox, _ = await town.messages.inbox(bob.id)
    assert [m.text for m in bob_inbox] == ["hi", "hi", "hi"]  # by name, by role, to all
