"""Shutdown and outages of a headless town (``tt run --no-repl`` and its event echo)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from tests.runtime.conftest import alive, eventually, log_pids
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town


async def test_the_event_echo_survives_dropped_connections(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 9): the echo's connection dropping ended a headless town; and it
    listed every agent for each event of an agent it did not know."""
    lines: list[str] = []
    rt = Runtime(town, lines.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)

        async def no_listing() -> None:
            raise AssertionError("the echo listed all agents")

        monkeypatch.setattr(town.agents, "list", no_listing)
        await town.spawn_agent("before")
        await eventually(lambda: _echoed(lines, "[spawn] spawned before"))
        await town.redis.execute("CLIENT", "KILL", "TYPE", "normal")  # every other client
        await town.spawn_agent("after")
        await eventually(lambda: _echoed(lines, "[spawn] spawned after"))
        nursery.cancel_scope.cancel()


async def _echoed(lines: list[str], text: str) -> bool:
    return any(text in line for line in lines)


def _wait_for(check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


async def test_a_second_sigterm_stops_the_rounds_at_once(
    town: Town, town_dir: Path, tt_env: dict[str, str]
) -> None:
    """The first SIGTERM lets rounds finish (30 s grace); a second one during that grace
    stops them now and exits cleanly, leaving no CLI behind. The old runtime stopped
    listening after the first signal: the second killed it (143) with its CLI running."""
    log = town_dir / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tinytown", "run", "--no-repl"],
            cwd=town_dir,
            env=tt_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        await eventually(lambda: _running(town), timeout=30)
        handle = await town.spawn_agent("w")
        await handle.assign("pid; hang")
        pids = await eventually(lambda: _pids(town), timeout=30)
        cli = pids[0]  # type: ignore[index]
        proc.send_signal(signal.SIGTERM)
        _wait_for(lambda: "shutting down" in log.read_text(), 30)
        assert proc.poll() is None and alive(cli)  # the grace: the round may finish
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)  # well inside the 30 s grace
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text
    assert not alive(cli)
    assert await town.runtime() is None  # the lease was released


async def _running(town: Town) -> bool:
    return await town.runtime() is not None


async def _pids(town: Town) -> list[int]:
    return log_pids(town, "w", "agent-pid")
