"""Crashes and outages: kill -9 of the runtime, a Redis restart, a second runtime."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.runtime.conftest import eventually, log_pids
from tinytown import AgentState, TaskState
from tinytown.errors import RuntimeBusyError
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.config import TownConfig
from tinytown.services.town import Town
from tinytown.store.server import EmbeddedServer

SCRIPTED_AGENT = Path(__file__).parents[2] / "actors" / "scripted_agent.py"

RUN = [sys.executable, "-m", "tinytown", "run", "--no-repl"]


def start_runtime_process(town_dir: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`tt run` as a real process (its own session, so kill -9 takes only it)."""
    log = open(town_dir / "runtime-test.log", "ab")
    return subprocess.Popen(
        RUN, cwd=town_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


async def runtime_up(town: Town, pid: int) -> bool:
    holder = await town.runtime()
    return holder is not None and holder.pid == pid


async def test_kill_9_of_the_runtime_mid_round_loses_nothing(
    town: Town, tt_env: dict[str, str]
) -> None:
    first = start_runtime_process(town.root, tt_env)
    try:
        await eventually(lambda: runtime_up(town, first.pid), timeout=20)
        handles = [await town.spawn_agent(f"w{i}") for i in range(2)]
        slow = [await h.assign("pid; sleep 2; print redone") for h in handles]
        queued = [await h.assign(f"print queued {i}") for i, h in enumerate(handles)]
        await eventually(lambda: _all_running(town, slow), timeout=20)
        round_pids = []
        for i in range(2):
            found = await eventually(lambda i=i: _pids(town, f"w{i}"), timeout=20)
            round_pids.append(found[0])  # type: ignore[index]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the CLI rounds were in their own process groups; a real crash may leave them: kill
    for pid in round_pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for task_id in slow:
        assert (await town.tasks.get(task_id)).state is TaskState.RUNNING
    second = start_runtime_process(town.root, tt_env)
    try:
        # the dead holder is on this host and gone: its lease is taken over at once
        await eventually(lambda: runtime_up(town, second.pid), timeout=30)
        for task_id in slow + queued:
            await eventually(lambda t=task_id: _terminal(town, t), timeout=60)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    for task_id in slow:
        task = await town.tasks.get(task_id)
        assert task.attempts == 2  # redone, and counted
    for task_id in queued:
        assert (await town.tasks.get(task_id)).state is TaskState.COMPLETED
    for handle in handles:
        assert await town.redis.execute("LLEN", town.keys.inflight(handle.id)) == 0


async def _pids(town: Town, agent: str) -> list[int]:
    return log_pids(town, agent, "agent-pid")


async def _all_running(town: Town, task_ids: list[str]) -> bool:
    states = [(await town.tasks.get(t)).state for t in task_ids]
    return all(state is TaskState.RUNNING for state in states)


async def _terminal(town: Town, task_id: str) -> bool:
    return (await town.tasks.get(task_id)).state.terminal


async def test_second_runtime_is_refused_naming_the_holder(
    town: Town, tt_env: dict[str, str]
) -> None:
    first = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.serve)
        result = await trio.run_process(
            RUN, cwd=town.root, env=tt_env, capture_stdout=True, capture_stderr=True, check=False
        )
        assert result.returncode == 1
        err = result.stderr.decode()
        assert "already running" in err and str(os.getpid()) in err
        assert "Traceback" not in err
        second_town = await Town.connect(town.root)
        with pytest.raises(RuntimeBusyError):
            await Runtime(second_town).serve()
        await second_town.aclose()
        nursery.cancel_scope.cancel()
    assert await town.runtime() is None  # released on the way out


@pytest.fixture
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path_factory.mktemp("restart") / ".tt")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_redis_restart_under_a_running_town_is_survived(
    private_server: EmbeddedServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tt_env: dict[str, str],
) -> None:
    monkeypatch.setenv("REDIS_URL", private_server.url)
    root = tmp_path / "restart-town"
    root.mkdir()
    config = TownConfig.create(root, f"r-{uuid.uuid4().hex[:8]}")
    config.data["agent_clis"] = {"scripted": {"command": f"{sys.executable} {SCRIPTED_AGENT}"}}
    config.data["default_cli"] = "scripted"
    config.save()
    town = await Town.connect(root)
    runtime = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.serve)
        handle = await town.spawn_agent("w")
        before = await handle.assign("print before the outage")
        await handle.wait(idle=True, timeout=20)
        await trio.to_thread.run_sync(private_server.stop)
        await trio.sleep(0.3)  # the town is cut off for a moment
        await trio.to_thread.run_sync(private_server.start)
        after_town = await Town.connect(root)
        after = (await after_town.tasks.assign("w", "print after the outage")).id
        await eventually(lambda: _terminal(after_town, after), timeout=30)
        assert (await after_town.tasks.get(before)).state is TaskState.COMPLETED
        assert (await after_town.tasks.get(after)).state is TaskState.COMPLETED
        agent = await after_town.agents.get(handle.id)
        assert agent.state is AgentState.IDLE
        await after_town.aclose()
        nursery.cancel_scope.cancel()
    await town.aclose()
