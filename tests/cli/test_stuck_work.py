"""Through `tt`: recover finds stuck tasks (dry run first); assign to a dead agent is
refused with one line, or goes to the backlog with --anyone; wait --timeout >= 0."""

from __future__ import annotations

import json

from tests.cli.clihelp import ok, ok_json, user_error
from tinytown.model import TaskState, now
from tinytown.services.town import Town


async def test_assign_to_a_stopped_agent_is_refused_or_backlogged(tt, town: Town) -> None:
    dead = await town.spawn_agent("dead")
    await town.lifecycle.apply_offline(dead.id, "kill")
    msg = user_error(tt("assign", "dead", "print never"))
    assert msg == (
        "Agent dead is stopped and takes no work; restart it, or put the task in the"
        " backlog (tt assign --anyone)."
    )
    assert await town.tasks.list() == []
    out = ok(tt("assign", "--anyone", "dead", "print later"))
    (task,) = await town.tasks.list()
    assert out == f"dead takes no work now; added task {task.short_id} to the backlog instead.\n"
    assert task.state is TaskState.PENDING and [t.id for t in await town.backlog.list()] == [
        task.id
    ]
    assert await dead.inbox_len() == 0


async def test_recover_requeues_a_running_task_nobody_works_on(tt, town: Town) -> None:
    lease = {"id": "test", "host": "elsewhere.invalid", "pid": 1, "started": now()}
    await town.redis.execute("SET", town.keys.runtime, json.dumps(lease), "PX", 60_000)
    worker = await town.spawn_agent("worker")
    task = await town.tasks.assign("worker", "print stuck")
    await town.redis.execute(
        "LMOVE", town.keys.inbox(worker.id), town.keys.inflight(worker.id), "LEFT", "RIGHT"
    )
    await town.tasks.start(task.id, worker.id)
    await town.redis.execute("DEL", town.keys.inflight(worker.id))

    dry = ok(tt("recover", "--dry-run"))
    assert dry == (
        f"Would requeue task {task.id[:8]} (running): worker is not working on it: print stuck\n"
    )
    assert (await town.tasks.get(task.id)).state is TaskState.RUNNING
    data = ok_json(tt("recover", "--json"))
    assert data["agents"] == [] and data["dry_run"] is False
    assert [(t["task"]["id"], t["agent"], t["why"]) for t in data["tasks"]] == [
        (task.id, "worker", "worker is not working on it")
    ]
    after = await town.tasks.get(task.id)
    assert (after.state, after.attempts) == (TaskState.PENDING, 1)
    assert ok(tt("recover")) == "No orphaned agents and no stuck tasks.\n"


async def test_wait_timeout_must_not_be_negative(tt, town: Town) -> None:
    await town.spawn_agent("bob")
    result = tt("wait", "bob", "--timeout", "-1")
    assert "needs 0 seconds or more" in user_error(result, 2)
    assert "needs 0 seconds or more" in user_error(tt("wait", "bob", "--timeout", "nan"), 2)
    assert "needs 0 seconds or more" in user_error(tt("recover", "--stale", "-1"), 2)


async def test_backlog_claim_to_a_cold_agent_is_refused(tt, town: Town) -> None:
    cold = await town.spawn_agent("cold")
    await town.lifecycle.apply_offline(cold.id, "close")
    task = await town.backlog.add("print me")
    msg = user_error(tt("backlog", "claim", task.id[:8], "cold"))
    assert msg.startswith("Agent cold is cold and takes no work;")
    assert [t.id for t in await town.backlog.list()] == [task.id]
    assert "takes no work" in user_error(tt("backlog", "assign-all", "cold"))


async def test_sync_push_to_a_stopped_agent_is_refused(tt, town: Town, town_dir) -> None:  # type: ignore[no-untyped-def]
    worker = await town.spawn_agent("worker")
    await town.lifecycle.apply_offline(worker.id, "kill")
    (town_dir / "tasks.toml").write_text(
        '[[tasks]]\nid = "a"\ndescription = "print a"\nagent = "worker"\n'
    )
    msg = user_error(tt("sync", "push"))
    assert msg.startswith("Agent worker is stopped and takes no work;")
    assert await town.tasks.list() == []
