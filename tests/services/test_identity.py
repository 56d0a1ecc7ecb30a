"""Identity is explicit: services take the sender as a parameter and never read
``TT_AGENT_ID``; one executable check with the child's PATH and cwd."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tinytown.errors import CliNotFoundError, InvalidInputError
from tinytown.model import MessageType, Query
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.executables import check_cli_installed, executable_found
from tinytown.services.town import Town


async def test_services_ignore_tt_agent_id(town: Town, monkeypatch: pytest.MonkeyPatch) -> None:
    alice = await town.spawn_agent("alice")
    await town.spawn_agent("bob")
    monkeypatch.setenv("TT_AGENT_ID", alice.id)  # as in alice's round: must not matter
    task = await town.tasks.assign("bob", "print x")
    assert task.assigned_by == SUPERVISOR_ID
    message = await town.messages.send("bob", Query("hi?"))
    assert message.sender == SUPERVISOR_ID


async def test_the_sender_is_a_parameter(town: Town) -> None:
    alice = await town.spawn_agent("alice")
    bob = await town.spawn_agent("bob")
    task = await town.tasks.assign("bob", "print x", sender=alice.id)
    assert task.assigned_by == alice.id
    queued, _ = await town.messages.inbox("bob")
    assert [(m.type, m.sender) for m in queued] == [(MessageType.TASK_ASSIGN, alice.id)]
    await town.tasks.complete(task.id, "ok", sender=bob.id)
    done, _ = await town.messages.inbox("alice")  # the assigner hears about it
    assert [m.type for m in done] == [MessageType.TASK_DONE]
    as_alice = town.handle(bob.id, sender=alice.id)  # the API: who acts through a handle
    other = await town.tasks.get(await as_alice.assign("print y"))
    assert other.assigned_by == alice.id
    backlog_task = await town.backlog.add("print z")
    claimed = await town.backlog.claim(backlog_task.id, "bob", sender=alice.id)
    assert claimed.assigned_by == alice.id


async def test_wait_refuses_a_negative_timeout(town: Town) -> None:
    await town.spawn_agent("w")
    with pytest.raises(InvalidInputError, match="0 seconds or more"):
        await town.agents.wait("w", timeout=-1)
    with pytest.raises(InvalidInputError):
        await (await town.agent("w")).wait(float("nan"))


def _tool(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    tool = where / "my-cli"
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


def test_one_executable_check_uses_the_childs_path_and_cwd(tmp_path: Path) -> None:
    _tool(tmp_path / "bin")
    assert executable_found("my-cli", env={"PATH": str(tmp_path / "bin")})
    assert not executable_found("my-cli", env={"PATH": str(tmp_path)})
    assert executable_found("./bin/my-cli", cwd=tmp_path)  # relative: against the child's cwd
    assert not executable_found("./bin/my-cli", cwd=tmp_path / "bin")
    with pytest.raises(CliNotFoundError, match="'my-cli' needs 'my-cli'"):
        check_cli_installed(["my-cli"], "my-cli", env={"PATH": "/nonexistent"})
    check_cli_installed(["./bin/my-cli", "--x"], "mine", cwd=tmp_path, env={})


async def test_spawn_checks_a_relative_cli_against_the_town_root(
    town: Town, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _tool(town.root / "tools")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the caller's cwd is not where the CLI will run
    agent = await town.agents.spawn("w", "./tools/my-cli")
    assert agent.cli == "./tools/my-cli"
    with pytest.raises(CliNotFoundError):
        await town.agents.spawn("v", "./nope/my-cli")
