"""Assertions shared by the CLI tests."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Result = subprocess.CompletedProcess[str]
RunIn = Callable[..., Result]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """Assert success with a quiet stderr; return stdout."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.stderr == "", result.stderr
    return result.stdout


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def user_error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """Assert a clean user error: exit ``code``, exactly one ``tt: `` line on stderr (for
    exit 1 nothing else at all), no traceback, nothing on stdout for exit 1 or 2.
    Returns the message without the ``tt: `` prefix."""
    out, err = result.stdout, result.stderr
    assert result.returncode == code, f"exit {result.returncode}\n{out}\n{err}"
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.startswith("tt: ")]
    assert len(lines) == 1, err
    if code == 1:
        assert err.splitlines() == lines, err
    if code == 2:
        assert out == "", out
    return lines[0][len("tt: ") :]


def parallel(*calls: Callable[[], Result]) -> list[Result]:
    """Run independent `tt` commands at the same time (each costs ~0.4 s of start-up);
    results in the order given. Only for commands whose outcomes do not depend on each other.
    Each call is a zero-argument callable, e.g. ``partial(tt, "list")``."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))
