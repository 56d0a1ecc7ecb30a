"""Stuck work has a way out (issue 9, point 5): orphaned tasks are found and requeued, and
work is not handed to an agent that will never do it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from tests.faults.faultkit import FaultTown, one_error_line


def _lose_assignment(ft: FaultTown, agent_id: str, task_id: str, state: str) -> None:
    """Make ``task_id`` an orphan: its task_assign message gone, its record in ``state``."""
    inbox = ft.key("inbox", agent_id)
    for raw in ft.r.lrange(inbox, 0, -1):
        if task_id in raw:
            ft.r.lrem(inbox, 1, raw)
    record = ft.task(task_id)
    record["state"] = state
    if state == "running":
        record["started_at"] = record["updated_at"]
        record["attempts"] = 1
    ft.r.set(ft.key("task", task_id), json.dumps(record))


def test_recover_finds_and_requeues_orphaned_tasks(ft: FaultTown) -> None:
    agent_id = ft.spawn("w")
    ft.start_run()
    ft.wait_state("w", "idle")
    ft.ok("interrupt", "w")  # paused: it takes nothing, so the picture holds still
    legit = ft.assign("w", "print legit")
    running = ft.assign("w", "print lost while running")
    assigned = ft.assign("w", "print lost while assigned")
    _lose_assignment(ft, agent_id, running, "running")
    _lose_assignment(ft, agent_id, assigned, "assigned")
    dry = ft.ok("recover", "--dry-run")
    assert running[:8] in dry and assigned[:8] in dry, dry
    assert legit[:8] not in dry, dry  # its assignment is still in the inbox
    assert ft.task_state(running) == "running" and ft.task_state(assigned) == "assigned"
    ft.ok("recover")
    backlog = ft.r.lrange(ft.key("backlog"), 0, -1)
    for task_id in (running, assigned):
        task = ft.task(task_id)
        assert task["state"] == "pending" and not task["assigned_to"], task
        assert task_id in backlog
    assert ft.task_state(legit) == "assigned"
    assert ft.agent("w")["state"] == "paused"  # a live agent is not touched
    ft.ok("resume", "w")
    for task_id in (legit, running, assigned):
        ft.wait_task(task_id, "completed")


def test_assign_to_an_agent_that_will_never_run_it_is_refused(ft: FaultTown) -> None:
    ft.spawn_all("c", "s", "e")
    ft.ok("close", "c")
    ft.ok("kill", "s")
    error_id = ft.agent_id("e")
    record = ft.agent("e")
    record.update(state="error", state_reason="crashed 6 times")
    ft.r.set(ft.key("agent", error_id), json.dumps(record))
    assert [ft.agent(n)["state"] for n in ("c", "s", "e")] == ["cold", "stopped", "error"]
    before = ft.r.zcard(ft.key("tasks"))
    with ThreadPoolExecutor(max_workers=3) as pool:
        refused = list(pool.map(lambda n: ft.tt("assign", n, "print x"), ("c", "s", "e")))
    for name, result in zip(("c", "s", "e"), refused, strict=True):
        line = one_error_line(result)
        assert name in line or ft.agent(name)["state"] in line, line
        assert ft.inbox(name) == []
    assert ft.r.zcard(ft.key("tasks")) == before  # nothing written
    with ThreadPoolExecutor(max_workers=3) as pool:
        queued = list(
            pool.map(lambda n: ft.tt("assign", n, "print y", "--anyone", "--json"), ("c", "s", "e"))
        )
    backlog = ft.r.lrange(ft.key("backlog"), 0, -1)
    for name, result in zip(("c", "s", "e"), queued, strict=True):
        assert result.returncode == 0, result.stderr
        task = json.loads(result.stdout)
        assert task["state"] == "pending" and not task["assigned_to"], task
        assert task["id"] in backlog
        assert ft.inbox(name) == []
