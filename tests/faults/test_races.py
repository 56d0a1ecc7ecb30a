"""Control verbs that meet the runtime at an awkward moment (issue 9, point 4), end to end:
a kill during crash backoff, a close during failure backoff, dispatch against kills."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from tests.faults.faultkit import FaultTown, until


def _crashes(town: FaultTown, agent_id: str) -> int:
    return sum(e.get("kind") == "crash" and e.get("agent") == agent_id for e in town.events())


def test_kill_during_crash_backoff_stops_the_agent(ft: FaultTown) -> None:
    agent_id = ft.spawn("w")
    proc = ft.start_run()
    ft.wait_state("w", "idle")
    # The agent's log path is a directory: every round fails to open it, and the actor
    # crashes, restarts with growing backoff (0.25, 0.5, 1, 2 s...), crashes again.
    log = ft.root / ".tt" / "logs" / "w.log"
    log.unlink(missing_ok=True)
    log.mkdir(parents=True)
    task = ft.assign("w", "print never")
    until(lambda: _crashes(ft, agent_id) >= 4, 20, what="a crash loop")  # now in a 2 s backoff
    started = time.monotonic()
    killed = ft.tt("kill", "w", timeout=30)
    assert killed.returncode == 0, killed.stderr
    assert time.monotonic() - started < 8, "the kill waited for the backoff"  # old: 10 s
    assert ft.agent("w")["state"] == "stopped", ft.agent("w")
    assert ft.task_state(task) == "pending"  # its work went back to the backlog
    assert ft.inflight("w") == 0
    log.rmdir()
    # The kill survives the end of the backoff: only a restart brings the agent back.
    ft.ok("restart", "w")
    ft.wait_task(task, "completed")
    assert proc.poll() is None


def test_close_during_failure_backoff_leaves_nothing_running(ft: FaultTown) -> None:
    ft.spawn("w")
    proc = ft.start_run()
    ft.wait_state("w", "idle")
    for _ in range(4):  # four failed rounds in a row: the next one waits 2 s first
        ft.wait_task(ft.assign("w", "fail"), "failed")
    task = ft.assign("w", "print after the failures")
    closed = ft.tt("close", "w", timeout=20)
    assert closed.returncode == 0, closed.stderr
    ft.wait_state("w", "cold", timeout=20)
    until(
        lambda: ft.task_state(task) != "running" and ft.inflight("w") == 0,
        10,
        what=lambda: f"task {ft.task_state(task)}, in flight {ft.inflight('w')}",
    )
    assert ft.task_state(task) in ("assigned", "pending", "completed")
    if ft.task_state(task) == "assigned":  # not done: its assignment waits in the inbox
        assert any(task in raw for raw in ft.inbox("w"))
    assert proc.poll() is None


def _fill_backlog(ft: FaultTown, count: int) -> set[str]:
    """``count`` pending tasks no agent matches (tag ``nobody``) at the head of the backlog:
    every dispatch pass reads past all of them, so a kill lands inside a pass."""
    template = ft.ok_json("backlog", "add", "never", "--tag", "nobody")
    ids = {str(uuid.uuid4()) for _ in range(count)}
    pipe = ft.r.pipeline(transaction=False)
    for task_id in ids:
        pipe.set(ft.key("task", task_id), json.dumps({**template, "id": task_id}))
        pipe.zadd(ft.key("tasks"), {task_id: time.time()})
        pipe.rpush(ft.key("backlog"), task_id)
    pipe.execute()
    return {template["id"], *ids}


def test_dispatch_against_kills_never_assigns_to_a_stopped_agent(ft: FaultTown) -> None:
    names = [f"a{i}" for i in range(3)]
    ft.spawn_all(*names)
    filler = _fill_backlog(ft, 3000)
    proc = ft.start_run()
    for name in names:
        ft.wait_state(name, "idle")
    calls = [lambda i=i: ft.tt("backlog", "add", f"print job {i}", "--json") for i in range(4)]
    calls += [lambda n=n: ft.tt("kill", n, timeout=30) for n in names]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        results = list(pool.map(lambda call: call(), calls))
    for result in results:
        assert result.returncode == 0, result.stderr
    for name in names:
        ft.wait_state(name, "stopped")
    assert proc.poll() is None, ft.run_log()
    backlog = set(ft.r.lrange(ft.key("backlog"), 0, -1))
    jobs = [t for t in ft.r.zrange(ft.key("tasks"), 0, -1) if t not in filler]
    assert len(jobs) == 4
    for task_id in jobs:
        task = ft.task(task_id)
        assert task["state"] in ("pending", "completed"), task  # never left with the dead
        if task["state"] == "pending":
            assert task_id in backlog and not task["assigned_to"], task
    pipe = ft.r.pipeline(transaction=False)
    for task_id in filler:  # done with the slow passes: let the jobs through quickly
        pipe.lrem(ft.key("backlog"), 1, task_id)
    pipe.execute()
    ft.ok("restart", "a0")
    for task_id in jobs:
        ft.wait_task(task_id, "completed")
    assert proc.poll() is None
