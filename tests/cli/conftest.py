"""Fixtures for the CLI tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.clihelp import RunIn


@pytest.fixture
def tt_in(tt_env: dict[str, str]) -> RunIn:
    """Run `tt` in any directory, with environment overrides (a value of None unsets)."""

    def run(
        *args: str, cwd: Path, env: dict[str, str | None] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        full = dict(tt_env)
        for key, value in (env or {}).items():
            if value is None:
                full.pop(key, None)
            else:
                full[key] = value
        return subprocess.run(
            [sys.executable, "-m", "tinytown", *args],
            cwd=cwd,
            env=full,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
