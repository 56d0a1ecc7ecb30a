"""Through `tt`: the CLI reads TT_AGENT_ID (an agent's round) and passes it to the
services as the sender; the CLI check uses the town root as the child's cwd."""

from __future__ import annotations

import stat

from tests.cli.clihelp import ok, ok_json, user_error
from tinytown.model import MessageType
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.town import Town


async def test_the_agent_running_tt_is_the_sender(tt, tt_env, town: Town) -> None:
    alice = await town.spawn_agent("alice")
    await town.spawn_agent("bob")
    plain = ok_json(tt("assign", "bob", "print from the supervisor", "--json"))
    assert plain["assigned_by"] == SUPERVISOR_ID
    tt_env["TT_AGENT_ID"] = alice.id  # as in alice's round
    task = ok_json(tt("assign", "bob", "print from alice", "--json"))
    assert task["assigned_by"] == alice.id
    ok(tt("send", "bob", "--query", "ready?"))
    queued, _ = await town.messages.inbox("bob")
    assert [(m.type, m.sender) for m in queued][-2:] == [
        (MessageType.TASK_ASSIGN, alice.id),
        (MessageType.QUERY, alice.id),
    ]
    ok(tt("task", "complete", task["id"], "--result", "done"))
    mail, _ = await town.messages.inbox("alice")
    assert [m.type for m in mail] == [MessageType.TASK_DONE]


async def test_spawn_checks_a_relative_cli_from_the_town_root(tt, town: Town) -> None:
    tool = town.root / "tools" / "my-cli"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\nexit 0\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    sub = town.root / "sub"
    sub.mkdir()
    assert "Spawned w" in ok(tt("spawn", "w", "--cli", "./tools/my-cli", cwd=sub))
    msg = user_error(tt("spawn", "v", "--cli", "./sub/my-cli", cwd=sub))
    assert msg == "CLI './sub/my-cli' needs './sub/my-cli', which is not installed or not on PATH."
