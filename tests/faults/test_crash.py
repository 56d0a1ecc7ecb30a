"""A runtime that dies hard, or is told twice to stop (issue 9, point 2): no agent process
outlives its town, and the work it was doing is not lost."""

from __future__ import annotations

import os
import signal
import sys
import time

from tests.faults.faultkit import LEDGER_AGENT, FaultTown, alive, town_processes, until


def test_kill_9_of_tt_run_takes_the_cli_and_its_grandchild(ft: FaultTown) -> None:
    ft.spawn_all("w", "idler")
    first = ft.start_run()
    ft.wait_state("w", "idle")
    task = ft.assign("w", "pid; grandchild 60; sleep 2; print finished")
    cli = until(lambda: ft.log_pids("w"), what="the CLI's pid")[0]
    grandchild = until(lambda: ft.log_pids("w", "grandchild-pid"), what="grandchild pid")[0]
    ft.unwatch(first.pid)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    until(
        lambda: not alive(cli) and not alive(grandchild),
        5,
        what=lambda: (
            f"CLI {cli} alive={alive(cli)}, grandchild {grandchild} "
            f"alive={alive(grandchild)} after kill -9 of tt run"
        ),
    )
    assert town_processes(ft.root) == []
    # Status and control verbs notice the dead runtime within a couple of seconds.
    until(lambda: ft.ok_json("status")["runtime"] is None, 5, what="status: runtime gone")
    started = time.monotonic()
    paused = ft.tt("interrupt", "idler", timeout=20)
    assert paused.returncode == 0, paused.stderr
    assert time.monotonic() - started < 8, "the verb waited for a dead runtime"  # old: 10 s
    assert time.monotonic() - killed_at < 15
    ft.ok("resume", "idler")
    assert ft.task_state(task) == "running"  # the dead round's task, not yet redone
    ft.start_run()
    done = ft.wait_task(task, "completed", timeout=30)
    assert "finished" in (done["result"] or "")
    assert done["attempts"] >= 2  # redone after the crash (at least once), and counted
    ft.wait_state("w", "idle")
    assert ft.inflight("w") == 0


def test_kill_9_of_tt_run_takes_a_setsid_grandchild_too(ft: FaultTown) -> None:
    ft.add_cli(
        "escaper",
        f"{sys.executable} {LEDGER_AGENT} --ledger {ft.root / 'ledger.jsonl'} --setsid-prob 1",
    )
    ft.spawn("w", cli="escaper")
    run = ft.start_run()
    ft.wait_state("w", "idle")
    ft.assign("w", "hang")
    # the CLI and its grandchild, which left the CLI's process group and session
    tree = until(lambda: len(found := town_processes(ft.root)) >= 2 and found, 20, what="tree")
    sessions = {os.getsid(pid) for pid in tree}
    assert len(sessions) == 2, "the grandchild did not call setsid()"
    ft.unwatch(run.pid)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    until(
        lambda: not town_processes(ft.root),
        5,
        what=lambda: f"{town_processes(ft.root)} alive after kill -9 of tt run (was {tree})",
    )


def test_second_sigterm_during_shutdown_kills_the_agents_trees(ft: FaultTown) -> None:
    ft.configure(shutdown_grace=60.0)  # the first SIGTERM would wait a whole minute
    ft.spawn("w")
    proc = ft.start_run()
    ft.wait_state("w", "idle")
    ft.assign("w", "pid; grandchild 60; hang")
    cli = until(lambda: ft.log_pids("w"), what="the CLI's pid")[0]
    grandchild = until(lambda: ft.log_pids("w", "grandchild-pid"), what="grandchild pid")[0]
    ft.unwatch(proc.pid)
    proc.send_signal(signal.SIGTERM)
    until(lambda: "shutting down" in ft.run_log(), 10, what="graceful shutdown begun")
    assert proc.poll() is None and alive(cli)  # still in its grace period
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    until(
        lambda: not alive(cli) and not alive(grandchild),
        5,
        what=lambda: (
            f"CLI alive={alive(cli)}, grandchild alive={alive(grandchild)} "
            f"after the second SIGTERM (exit {proc.returncode})"
        ),
    )
    assert town_processes(ft.root) == []
    assert "Traceback" not in ft.run_log()
