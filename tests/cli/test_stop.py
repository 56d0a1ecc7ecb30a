"""`tt stop [--now]` and `tt down`: a running town is stopped from another process, which
says what it did and returns once the town has stopped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.cli.clihelp import RunIn, ok, user_error
from tests.runtime.conftest import alive, eventually, log_pids
from tinytown import AgentState, TaskState
from tinytown.services.town import Town
from tinytown.store.server import EmbeddedServer


async def _released(town: Town) -> bool:
    return await town.runtime() is None


async def _start_detached(town: Town, tt) -> int:  # type: ignore[no-untyped-def]
    out = ok(tt("run", "--detach"))
    assert "Stop it with: tt stop" in out and "kill" not in out
    holder = await town.runtime()
    assert holder is not None
    return holder.pid


async def test_stop_without_a_runtime_says_so(tt) -> None:  # type: ignore[no-untyped-def]
    out = ok(tt("stop"))
    assert out.startswith("Town ") and out.endswith(" is not running.\n")


async def test_stop_lets_a_round_finish_then_returns_once_stopped(
    town: Town, tt, tt_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    pid = await _start_detached(town, tt)
    try:
        ok(tt("spawn", "ann"))
        ok(tt("wait", "ann", "--idle", "--timeout", "20"))
        go = town.root / "go-ahead"
        ok(tt("assign", "ann", f"pid; waitfile {go}; print finished"))
        await eventually(lambda: _pids(town, "ann"), timeout=20)
        stopping = subprocess.Popen(
            [sys.executable, "-m", "tinytown", "stop"],
            cwd=town.root,
            env=tt_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert stopping.stdout is not None
        first = await trio.to_thread.run_sync(stopping.stdout.readline)
        assert f"Asked town {town.name} (pid {pid} on " in first
        assert "rounds of ann get up to 30 s to finish." in first
        assert stopping.poll() is None and await town.runtime() is not None  # still waiting
        go.touch()  # the round may finish: it is not cut short
        rest, err = await trio.to_thread.run_sync(lambda: stopping.communicate(timeout=60))
        assert stopping.returncode == 0, err
        assert rest.startswith(f"Town {town.name} stopped (")
    finally:
        tt("stop", "--now")
    assert await town.runtime() is None  # stopped when `tt stop` returned
    assert not alive(pid)
    tasks = await town.tasks.list()
    assert [t.state for t in tasks] == [TaskState.COMPLETED]
    assert "finished" in (tasks[0].result or "")
    agent = await town.agents.resolve("ann")
    assert agent.state is AgentState.IDLE  # kept: the next `tt run` resumes the town


async def test_stop_now_cancels_rounds_at_once(town: Town, tt) -> None:  # type: ignore[no-untyped-def]
    await _start_detached(town, tt)
    try:
        ok(tt("spawn", "ann"))
        ok(tt("wait", "ann", "--idle", "--timeout", "20"))
        ok(tt("assign", "ann", "pid; hang"))
        cli_pid = (await eventually(lambda: _pids(town, "ann"), timeout=20))[0]  # type: ignore[index]
        started = trio.current_time()
        out = ok(tt("stop", "--now"))
        assert "to stop now: rounds of ann are cancelled." in out
        assert f"Town {town.name} stopped (" in out
        assert trio.current_time() - started < 20  # not the 30 s grace
    finally:
        tt("stop", "--now")
    assert await town.runtime() is None and not alive(cli_pid)
    # The cancelled round's task is redone by the next run (its message stays in flight).
    tasks = await town.tasks.list()
    assert [t.state for t in tasks] == [TaskState.RUNNING]


async def test_down_stops_the_town_then_its_redis(town: Town, tt) -> None:  # type: ignore[no-untyped-def]
    await _start_detached(town, tt)
    try:
        out = ok(tt("down"))
    finally:
        tt("stop", "--now")
    lines = out.splitlines()
    assert lines[0].startswith(f"Asked town {town.name} (pid ")
    assert lines[1].startswith(f"Town {town.name} stopped (")
    assert lines[2] == f"Town {town.name} uses an external Redis; it keeps running."
    assert await town.runtime() is None


async def test_stop_times_out_with_a_clear_message(town: Town, tt) -> None:  # type: ignore[no-untyped-def]
    # A lease of a runtime on another host that never answers (it hung, or is gone and
    # its lease has not expired): the request times out and nothing is claimed done.
    lease = '{"id": "x", "host": "otherhost", "pid": 4242, "started": "2026-01-01T00:00:00Z"}'
    await town.redis.execute("SET", town.keys.runtime, lease)
    try:
        msg = user_error(tt("stop", "--timeout", "1"))
        assert "did not answer the shutdown request within 1 s" in msg
    finally:
        await town.redis.execute("DEL", town.keys.runtime)


async def test_stop_through_the_api(town: Town) -> None:
    from tinytown.runtime.town_runtime import Runtime

    assert await town.request_stop() is None  # not running
    runtime = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.serve)
        holder = await town.runtime()
        assert holder is not None
        asked = await town.request_stop()
        assert asked is not None and asked.holder == holder and asked.rounds == []
        await town.wait_stopped(asked.holder, 30)
        assert runtime.shutdown_requested.is_set()
    assert await town.runtime() is None


async def _pids(town: Town, agent: str) -> list[int]:
    return log_pids(town, agent, "agent-pid")


def test_readme_flow_run_detach_then_down_on_embedded_redis(
    tt_in: RunIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded: dict[str, str | None] = {"REDIS_URL": None}
    monkeypatch.delenv("REDIS_URL")
    root = tmp_path / "readme"
    root.mkdir()
    server = EmbeddedServer(root / ".tt")
    try:
        ok(tt_in("init", "--name", "readme-town", cwd=root, env=embedded))
        assert "Stop it with: tt stop" in ok(tt_in("run", "--detach", cwd=root, env=embedded))
        lines = ok(tt_in("down", cwd=root, env=embedded)).splitlines()
        assert lines[0].startswith("Asked town readme-town (pid ")
        assert lines[1].startswith("Town readme-town stopped (")
        assert lines[2] == f"Stopped Redis of town readme-town (data kept in {root / '.tt'})."
        assert not server.is_running()
        assert "is not running (its Redis is stopped too)" in ok(
            tt_in("stop", cwd=root, env=embedded)
        )
    finally:
        tt_in("stop", "--now", cwd=root, env=embedded)
        server.stop()


def test_a_bad_timeout_is_a_usage_error(tt) -> None:  # type: ignore[no-untyped-def]
    for value in ("-1", "0", "nan", "soon"):
        msg = user_error(tt("stop", f"--timeout={value}"), code=2)
        assert msg.startswith("argument --timeout: needs a"), msg
    assert "--timeout" in user_error(tt("down", "--timeout=0"), code=2)
