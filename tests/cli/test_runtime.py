"""`tt run` and the control verbs through the command line, across processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runtime.conftest import alive, eventually, log_pids, proc_state
from tinytown import AgentState, TaskState
from tinytown.services.town import Town


async def _pid_from_log(town: Town, agent: str) -> list[int]:
    return log_pids(town, agent, "agent-pid")


async def test_detached_town_obeys_control_verbs_from_other_processes(town: Town, tt) -> None:  # type: ignore[no-untyped-def]
    started = tt("run", "--detach")
    assert started.returncode == 0, started.stderr
    holder = await town.runtime()
    assert holder is not None and f"pid {holder.pid}" in started.stdout
    try:
        again = tt("run")  # one runtime per town
        assert again.returncode == 1 and "already running" in again.stderr

        assert tt("spawn", "ann").returncode == 0
        assert tt("wait", "ann", "--idle", "--timeout", "20").returncode == 0
        go = town.root / "go-ahead"  # the round cannot end before it is interrupted
        assigned = tt("assign", "ann", f"pid; waitfile {go}; print from ann")
        assert assigned.returncode == 0, assigned.stderr
        pid = (await eventually(lambda: _pid_from_log(town, "ann")))[0]  # type: ignore[index]

        paused = tt("interrupt", "ann")
        assert paused.returncode == 0 and "paused" in paused.stdout, paused.stderr
        assert "not running" not in paused.stdout
        await eventually(lambda: _stopped(pid), timeout=20)  # T (D first under I/O load)
        assert tt("resume", "ann").returncode == 0
        go.touch()
        assert tt("wait", "ann", "--idle", "--timeout", "20").returncode == 0
        tasks = json.loads(tt("tasks", "--json").stdout)
        assert [t["state"] for t in tasks] == ["completed"]
        assert "from ann" in tasks[0]["result"]

        tt("assign", "ann", "pid; hang")
        hang_pid = await eventually(lambda: _second(town))  # type: ignore[assignment]
        killed = tt("kill", "ann")
        assert killed.returncode == 0 and "stopped" in killed.stdout
        await eventually(lambda: _dead(hang_pid), timeout=5)  # type: ignore[arg-type]
        status = json.loads(tt("status", "--json").stdout)
        assert status["runtime"] is not None

        timed_out = tt("wait", "ann", "--timeout", "0.2")  # stopped already: terminal
        assert timed_out.returncode == 0
    finally:
        os.kill(holder.pid, signal.SIGTERM)
    await eventually(lambda: _released(town), timeout=20)
    agent = await town.agents.resolve("ann")
    assert agent.state is AgentState.STOPPED
    backlog = await town.backlog.list()
    assert [t.state for t in backlog] == [TaskState.PENDING]  # the killed task, requeued


async def _second(town: Town) -> int | None:
    pids = log_pids(town, "ann", "agent-pid")
    return pids[1] if len(pids) > 1 else None


async def _dead(pid: int) -> bool:
    return not alive(pid)


async def _released(town: Town) -> bool:
    return await town.runtime() is None


def test_sigint_shuts_the_town_down_gracefully(town_dir: Path, tt_env: dict[str, str], tt) -> None:  # type: ignore[no-untyped-def]
    assert tt("spawn", "bo").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinytown", "run", "--no-repl"],
        cwd=town_dir,
        env=tt_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert tt("wait", "bo", "--idle", "--timeout", "20").returncode == 0
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "shutting down" in out and "Traceback" not in out
    status = json.loads(tt("status", "--json").stdout)
    assert status["runtime"] is None


_ = pytest


async def _stopped(pid: int) -> bool:
    return proc_state(pid) == "T"


async def test_a_running_town_uses_the_current_config(town: Town, tt) -> None:  # type: ignore[no-untyped-def]
    assert tt("run", "--detach").returncode == 0
    config = town.root / "tinytown.toml"
    try:
        # A CLI preset added while the town runs is known to the runtime too.
        scripted = town.config.clis()["scripted"]
        assert tt("config", "agent_clis.fresh", scripted).returncode == 0
        assert tt("spawn", "bob", "--cli", "fresh").returncode == 0
        waited = tt("wait", "bob", "--idle", "--timeout", "20")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert tt("assign", "bob", "print from fresh").returncode == 0
        assert tt("wait", "bob", "--idle", "--timeout", "20").returncode == 0
        tasks = json.loads(tt("tasks", "--json").stdout)
        assert [t["state"] for t in tasks] == ["completed"], tasks

        # The preset removed by hand: a restart uses the file as it is now, and the
        # error names it.
        assert tt("kill", "bob").returncode == 0
        text = config.read_text()
        start = text.index("[agent_clis.fresh]")
        config.write_text(text[:start] + text[start:].split("\n", 2)[2])
        assert "fresh" not in config.read_text()
        assert tt("restart", "bob").returncode == 0
        assert tt("wait", "bob", "--timeout", "20").returncode == 0  # terminal: error
        agent = json.loads(tt("list", "--json").stdout)[0]
        assert agent["state"] == "error"
        assert agent["state_reason"] == (
            f"CLI 'fresh' is not defined in {config}, and no program 'fresh' is installed"
            " or on PATH."
        )
    finally:
        tt("stop", "--now")
    assert await town.runtime() is None
