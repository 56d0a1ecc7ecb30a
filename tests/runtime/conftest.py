"""Fixtures for runtime tests: a running town hosted in the test's own trio run."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from tinytown.services.town import Town


async def eventually(
    check: Callable[[], Awaitable[object]], timeout: float = 10.0, step: float = 0.02
) -> object:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while True:
            value = await check()
            if value:
                return value
            await trio.sleep(step)


def log_pids(town: Town, agent: str, label: str) -> list[int]:
    """Pids the scripted agent printed (``agent-pid N`` / ``grandchild-pid N``) to its log."""
    path = town.root / ".tt" / "logs" / f"{agent}.log"
    if not path.exists():
        return []
    return [int(p) for p in re.findall(rf"{label} (\d+)", path.read_text())]


def proc_state(pid: int) -> str | None:
    """The kernel's state letter for ``pid`` (R, S, T, Z...), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    state = proc_state(pid)
    if state is None or state == "Z":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def io_clock(mock_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    """Virtual time that jumps once every task has been blocked for 20 ms of real time:
    sleeps and backoffs take no time, while Redis round trips (real I/O) still complete
    before any timeout, unlike ``autojump_clock``, which jumps during every round trip."""
    mock_clock.autojump_threshold = 0.02
    return mock_clock
