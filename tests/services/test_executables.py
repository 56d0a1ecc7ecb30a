"""What the executable check caches, and what it never takes for granted."""

from __future__ import annotations

import os
import shutil
import stat
import sysconfig
from pathlib import Path

import pytest

from tinytown.errors import CliNotFoundError
from tinytown.services.executables import agent_path, check_cli_installed, executable_found
from tinytown.services.town import Town


def _tool(where: Path, name: str = "my-cli") -> Path:
    where.mkdir(parents=True, exist_ok=True)
    tool = where / name
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


def test_agent_path_puts_our_scripts_first_and_reads_the_interpreter_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripts = sysconfig.get_path("scripts")
    assert agent_path("/a:/b") == f"{scripts}{os.pathsep}/a:/b"
    assert agent_path(f"/a:{scripts}") == f"/a:{scripts}"  # already there: unchanged

    def rebuilt(name: str) -> str:
        raise AssertionError("sysconfig consulted again")

    monkeypatch.setattr(sysconfig, "get_path", rebuilt)
    assert agent_path("/c") == f"{scripts}{os.pathsep}/c"
    monkeypatch.setenv("PATH", "/d")
    assert agent_path() == f"{scripts}{os.pathsep}/d"  # PATH itself is read each call


def test_only_a_remembering_caller_keeps_a_positive_answer(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path / "bin")}
    tool = _tool(tmp_path / "bin")
    assert executable_found("my-cli", env=env, remember=True)
    tool.unlink()
    assert executable_found("my-cli", env=env, remember=True)  # spawn: found once, kept
    assert not executable_found("my-cli", env=env)  # the round's check looks again
    with pytest.raises(CliNotFoundError):
        check_cli_installed(["my-cli"], "mine", env=env)
    # A miss is never remembered: a CLI installed after one is found at once.
    assert not executable_found("other-cli", env=env, remember=True)
    _tool(tmp_path / "bin", "other-cli")
    assert executable_found("other-cli", env=env, remember=True)
    # The answer is per search path: another PATH is looked up afresh.
    assert not executable_found("my-cli", env={"PATH": str(tmp_path)}, remember=True)


def test_a_found_cli_is_checked_where_it_was_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round's check does not walk PATH again while the file found last time is still
    an executable; once it is gone, PATH is walked again (found elsewhere, or missing)."""
    first, second = tmp_path / "first", tmp_path / "second"
    env = {"PATH": f"{first}{os.pathsep}{second}"}
    tool = _tool(first)
    assert executable_found("my-cli", env=env)
    walks: list[str] = []
    real_which = shutil.which

    def which(name: str, mode: int = os.F_OK | os.X_OK, path: str | None = None) -> str | None:
        walks.append(name)
        return real_which(name, mode, path)

    monkeypatch.setattr(shutil, "which", which)
    assert executable_found("my-cli", env=env) and walks == []
    tool.chmod(0o644)  # no longer executable: looked up again, and missing
    assert not executable_found("my-cli", env=env) and walks == ["my-cli"]
    tool.unlink()
    _tool(second)
    assert executable_found("my-cli", env=env) and walks == ["my-cli", "my-cli"]
    assert executable_found("my-cli", env=env) and len(walks) == 2  # kept at its new place


async def test_spawn_remembers_a_found_cli_and_still_refuses_a_missing_one(
    town: Town, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    tool = _tool(tmp_path / "bin", "cached-cli")
    await town.agents.spawn("a", "cached-cli")
    tool.unlink()
    # Spawn relies on the earlier answer for the rest of the process's life ...
    await town.agents.spawn("b", "cached-cli")
    # ... the actor's start and every round check without it (runtime/process.py).
    with pytest.raises(CliNotFoundError, match="cached-cli"):
        check_cli_installed(["cached-cli"], "cached-cli", env={"PATH": agent_path()})
    with pytest.raises(CliNotFoundError):
        await town.agents.spawn("c", "never-installed-cli")
