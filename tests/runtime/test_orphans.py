"""No agent process outlives its town, through `tt run` itself (issue 9, point 2).

`tt run --no-repl` runs a CLI (tests/runtime/clis/tree_cli.py) that starts a grandchild in
its group and one that left it with setsid(); then `tt run` is killed with SIGKILL mid-round.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.faults.faultkit import children
from tests.runtime.conftest import alive, eventually
from tinytown import TaskState
from tinytown.services.config import TownConfig
from tinytown.services.town import Town

TREE_CLI = Path(__file__).parent / "clis" / "tree_cli.py"
RUN = [sys.executable, "-m", "tinytown", "run", "--no-repl"]
pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")


def _tree_pids(town: Town, agent: str) -> dict[str, int]:
    log = town.root / ".tt" / "logs" / f"{agent}.log"
    text = log.read_text() if log.exists() else ""
    return {kind: int(pid) for kind, pid in re.findall(r"(\w+)-pid (\d+)", text)}


def _guard_of(pid: int) -> int:
    """The process guard `tt run` started (runtime/guard.py)."""
    for child in children(pid):
        if b"guard.py" in Path(f"/proc/{child}/cmdline").read_bytes():
            return child
    raise AssertionError(f"no guard process under {pid}")


@pytest.fixture
def tree_town(town_dir: Path, tt_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    config = TownConfig.load(town_dir)
    config.data["agent_clis"]["tree"] = {"command": f"{sys.executable} {TREE_CLI}"}
    config.save()
    env = dict(tt_env)
    env["TREE_RELEASE"] = str(tmp_path / "release")  # absent: rounds hang with a tree
    env["TREE_LEDGER"] = str(tmp_path / "completions")
    return env


def _start_run(town: Town, env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    with open(town.root / f"{name}.log", "wb") as out:
        return subprocess.Popen(
            RUN,
            cwd=town.root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _running(town: Town, proc: subprocess.Popen[bytes]) -> bool:
    holder = await town.runtime()
    return holder is not None and holder.pid == proc.pid


async def _kill_9_mid_round(
    town: Town, env: dict[str, str], *, with_guard: bool
) -> tuple[str, dict[str, int]]:
    first = _start_run(town, env, "first")
    try:
        await eventually(lambda: _running(town, first), timeout=30)
        handle = await town.spawn_agent("w", cli="tree")
        task = await handle.assign("build the thing")
        await eventually(
            lambda: trio.to_thread.run_sync(lambda: "cli" in _tree_pids(town, "w")), timeout=30
        )
        pids = _tree_pids(town, "w")
        assert set(pids) == {"group", "setsid", "cli"} and all(map(alive, pids.values()))
        if with_guard:
            os.kill(_guard_of(first.pid), signal.SIGKILL)  # leave it all to the ledger
    finally:
        first.kill()
        first.wait()
    return task, pids


async def _finish_in_a_second_run(town: Town, env: dict[str, str], task: str, tmp: Path) -> str:
    (tmp / "release").touch()  # from now on the CLI completes at once
    second = _start_run(town, env, "second")
    try:
        await eventually(lambda: _running(town, second), timeout=30)

        async def done() -> bool:
            return (await town.tasks.get(task)).state is TaskState.COMPLETED

        await eventually(done, timeout=30)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    return (town.root / "second.log").read_text()


async def test_kill_9_of_tt_run_takes_the_cli_and_its_grandchildren(
    town: Town, tree_town: dict[str, str], tmp_path: Path
) -> None:
    task, pids = await _kill_9_mid_round(town, tree_town, with_guard=False)
    # the parent-death signal takes the CLI, the guard its group and the setsid grandchild
    await eventually(
        lambda: trio.to_thread.run_sync(lambda: not any(map(alive, pids.values()))), timeout=5
    )
    assert await town.runtime() is None  # a dead local holder is seen at once
    await _finish_in_a_second_run(town, tree_town, task, tmp_path)
    done = await town.tasks.get(task)
    assert done.attempts == 2  # redone after the crash, and counted
    assert (tmp_path / "completions").read_text() == f"done {task}\n"  # completed once


async def test_the_next_tt_run_kills_what_the_ledger_names_before_redelivering(
    town: Town, tree_town: dict[str, str], tmp_path: Path
) -> None:
    task, pids = await _kill_9_mid_round(town, tree_town, with_guard=True)
    # no guard: only the CLI died (parent-death signal); its grandchildren live on
    await eventually(lambda: trio.to_thread.run_sync(lambda: not alive(pids["cli"])), timeout=5)
    assert alive(pids["group"]) and alive(pids["setsid"])
    log = await _finish_in_a_second_run(town, tree_town, task, tmp_path)
    assert not alive(pids["group"]) and not alive(pids["setsid"])
    assert "killed leftover round processes" in log
    assert log.index("killed leftover") < log.index("running (")  # before any actor
    assert (tmp_path / "completions").read_text() == f"done {task}\n"
