"""tt spawn, list, interrupt/resume/close/kill/restart, wait, prune; agent references."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from functools import partial
from pathlib import Path

import attrs
import trio

from tests.cli.clihelp import ok, ok_json, parallel, user_error
from tinytown.model import AgentState, TaskState, dumps
from tinytown.services.town import Town


async def _names(town: Town) -> list[str]:
    return [a.name for a in await town.agents.list()]


async def test_spawn_list_and_spawn_errors(tt, town: Town) -> None:
    out = ok(tt("spawn", "alice", "--role", "tester", "--max-rounds", "3", "--scope", "api"))
    (alice,) = await town.agents.list()
    assert out.splitlines() == [
        f"Spawned alice ({alice.nickname}), id {alice.id[:8]}, cli scripted, role tester.",
        "Town is not running; the agent starts with 'tt run'.",
    ]
    assert (alice.role_id, alice.max_rounds, alice.current_scope) == ("tester", 3, "api")
    bob = ok_json(
        tt(
            "spawn",
            "bob",
            "--nickname",
            "Zed",
            "-c",
            "scripted",
            "--parent",
            "alice",
            "--mode",
            "forkedcontext",
            "--json",
        )
    )
    assert (bob["nickname"], bob["parent_agent_id"], bob["spawn_mode"]) == (
        "Zed",
        alice.id,
        "forkedcontext",
    )

    table = ok(tt("list")).splitlines()
    assert table[0].split() == ["NAME", "NICKNAME", "ROLE", "STATE", "TASK", "INBOX", "ID"]
    assert table[1].split() == [
        "alice",
        alice.nickname,
        "tester",
        "starting",
        "-",
        "0",
        alice.id[:8],
    ]
    assert table[2].split()[:4] == ["bob", "Zed", "-", "starting"]
    listed = ok_json(tt("list", "--json"))
    assert [(a["name"], a["state"], a["inbox"]) for a in listed] == [
        ("alice", "starting", 0),
        ("bob", "starting", 0),
    ]

    # Bad input changes nothing.
    dup, reserved, no_cli, bad_name, no_parent, bad_mode = parallel(
        partial(tt, "spawn", "alice"),
        partial(tt, "spawn", "Supervisor"),
        partial(tt, "spawn", "carol", "--cli", "/nonexistent/bin"),
        partial(tt, "spawn", "bad name!"),
        partial(tt, "spawn", "dave", "--parent", "nobody"),
        partial(tt, "spawn", "erin", "--mode", "forked"),
    )
    assert user_error(dup) == "An agent named 'alice' already exists."
    assert "reserved for the supervisor" in user_error(reserved)
    msg = user_error(no_cli)
    assert "'/nonexistent/bin'" in msg and "not installed" in msg
    assert "is not allowed" in user_error(bad_name)
    assert "No agent named 'nobody'" in user_error(no_parent)
    assert "invalid choice: 'forked'" in user_error(bad_mode, 2)
    assert await _names(town) == ["alice", "bob"]


async def test_control_verbs_without_a_runtime(tt, town: Town) -> None:
    alice = await town.agents.spawn("alice")
    task = await town.tasks.assign("alice", "Build it")
    recorded = "(town not running; recorded)"

    assert ok(tt("interrupt", "alice")) == f"alice ({alice.nickname}): paused {recorded}\n"
    assert ok(tt("resume", "alice")) == f"alice ({alice.nickname}): idle {recorded}\n"
    msg = user_error(tt("resume", "alice"))
    assert msg == "Agent alice is idle, not paused."
    assert (await town.agents.get(alice.id)).state is AgentState.IDLE

    assert ok(tt("close", "alice")).startswith(f"alice ({alice.nickname}): cold")
    assert user_error(tt("kill", "alice")) == "Agent alice is already cold."
    assert ok(tt("restart", "alice")).startswith(f"alice ({alice.nickname}): starting")
    killed = ok_json(tt("kill", "alice", "--json"))
    assert (killed["state"], killed["live"]) == ("stopped", False)
    # Its unfinished task went back to the backlog.
    assert (await town.tasks.get(task.id)).state is TaskState.PENDING
    assert [t.id for t in await town.backlog.list()] == [task.id]

    assert ok(tt("wait", "alice")) == f"alice ({alice.nickname}): stopped\n"
    assert "No agent named 'ghost'" in user_error(tt("interrupt", "ghost"))


async def test_wait_timeout_and_idle(tt, town: Town) -> None:
    bob = await town.agents.spawn("bob")
    result = tt("wait", "bob", "--timeout", "0.3")
    assert user_error(result, 3) == "Agent bob is still starting after 0.3 s."
    await town.lifecycle.interrupt("bob")
    await town.lifecycle.resume("bob")  # offline: paused -> idle, inbox empty
    assert ok(tt("wait", "bob", "--idle", "--timeout", "5")) == f"bob ({bob.nickname}): idle\n"


async def test_agent_references(tt, town: Town) -> None:
    alice = await town.agents.spawn("alice", nickname="Ada")
    bob = await town.agents.spawn("bob", nickname="Sam")
    # Nicknames are unique now; a town from before that rule may still hold twins.
    carol = attrs.evolve(await town.agents.spawn("carol", nickname="Samuel"), nickname="Sam")
    await town.redis.execute("SET", town.keys.agent(carol.id), dumps(carol))

    assert "paused" in ok(tt("interrupt", alice.id))  # full id
    assert "idle" in ok(tt("resume", alice.id[:6]))  # id prefix
    assert "stopped" in ok(tt("kill", "ada"))  # nickname, any case
    msg = user_error(tt("interrupt", "Sam"))
    assert msg == (
        f"Agent reference 'Sam' is ambiguous: bob ({bob.id[:8]}), carol ({carol.id[:8]})."
    )
    assert "No agent named 'ab'" in user_error(tt("close", "ab"))  # prefixes need 4+ hex
    # A malformed record is reported and skipped, never a crash.
    bad_id = "11111111-1111-4111-8111-111111111111"
    await town.redis.execute("HSET", town.keys.agents, "broken", bad_id)
    await town.redis.execute("SET", town.keys.agent(bad_id), "{not json")
    result = tt("list")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith(
        f"tt: warning: Malformed agent JSON at {town.keys.agent(bad_id)}"
    )
    assert len(result.stderr.splitlines()) == 1
    assert [line.split()[0] for line in result.stdout.splitlines()] == [
        "NAME",
        "alice",
        "bob",
        "carol",
    ]
    states = {a.name: a.state for a in await town.agents.list()}
    assert states == {
        "alice": AgentState.STOPPED,
        "bob": AgentState.STARTING,
        "carol": AgentState.STARTING,
    }


async def test_prune(tt, town: Town) -> None:
    await town.agents.spawn("alice")
    await town.agents.spawn("bob")
    await town.lifecycle.kill("alice")
    assert ok(tt("prune")) == "Removed 1 agent(s): alice.\n"
    assert await _names(town) == ["bob"]
    assert ok(tt("prune", "--all")) == "Removed 1 agent(s): bob.\n"
    assert ok(tt("prune")) == "Nothing to prune.\n"
    assert await town.agents.list() == []


def _wait_on_a_terminal(tt_env: dict[str, str], root: Path, *args: str) -> tuple[int, str, str]:
    """`tt wait ...` with stderr on a pseudo-terminal: exit code, stdout, what the
    terminal showed."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tinytown", "wait", *args],
            cwd=root,
            env={**tt_env, "TERM": "xterm"},
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
        )
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            shown += chunk
        out, _ = proc.communicate(timeout=60)
        return proc.returncode, out, shown.decode()
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


async def test_wait_shows_progress_on_a_terminal_only(tt, tt_env, town: Town) -> None:
    await town.agents.spawn("bob")
    code, out, shown = await trio.to_thread.run_sync(
        _wait_on_a_terminal, tt_env, town.root, "bob", "--timeout", "1.5"
    )
    assert code == 3 and out == ""
    assert "\r\x1b[Ktt: waiting for bob to stop (stopped, cold or error)… 0s of 1.5s" in shown
    assert "… 1s of 1.5s" in shown  # it counts while it waits
    assert "\r\x1b[K" in shown.split("1s of 1.5s", 1)[1]  # erased before the verdict
    assert "tt: Agent bob is still starting after 1.5 s." in shown
    # Not a terminal (a script): only the verdict, nothing that moves.
    assert user_error(tt("wait", "bob", "--timeout", "0.2"), code=3) == (
        "Agent bob is still starting after 0.2 s."
    )
