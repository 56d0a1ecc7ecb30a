"""Tinytown against the real claude, codex and gemini, as a new user meets them: not logged
in, no key, often root, here without network (docs/agents.md#troubleshooting).

- ``tt doctor`` says each is not logged in, says what claude does as root, and sees the
  town's MCP server connected through ``claude mcp list``;
- a town with one agent of each and a task each ends with every agent stopped for setup
  with its CLI's own words (codex without network: its round ends early, and ``codex login
  status`` then says it is not logged in), and no task failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import cast

import trio

from tests.real_cli.conftest import needs_real_clis
from tests.runtime.conftest import eventually
from tinytown import TaskState
from tinytown.model import Agent
from tinytown.services.config import TownConfig
from tinytown.services.town import Town

pytestmark = needs_real_clis

ROOT = os.geteuid() == 0
AGENTS = (("ann", "claude"), ("sam", "claude-safe"), ("cody", "codex"), ("gem", "gemini"))


def _tt(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tinytown", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _spawn_all(env: dict[str, str], root: Path) -> None:
    for name, cli in AGENTS:
        spawned = _tt(env, root, "spawn", name, "--cli", cli)
        assert spawned.returncode == 0, spawned.stderr
        if ROOT and cli == "claude":
            assert "running as root" in spawned.stderr and "claude-safe" in spawned.stderr


def test_doctor_with_the_real_clis(real_env: dict[str, str], town_dir: Path) -> None:
    _spawn_all(real_env, town_dir)
    done = _tt(real_env, town_dir, "doctor", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    checks = {(c["subject"].split()[0], c["check"]): c for c in report["checks"]}
    for cli in ("claude", "claude-safe", "codex", "gemini"):
        installed = checks[(cli, "installed")]
        assert installed["level"] == "ok", installed
        print(f"{cli}: {installed['text']}")  # the versions seen, in the test's output
        login = checks[(cli, "login")]
        assert login["level"] == "FAIL", login
    assert "loggedIn false" in checks[("claude", "login")]["text"]
    assert "Not logged in" in checks[("codex", "login")]["text"]
    assert "no auth method" in checks[("gemini", "login")]["text"]
    # claude's bypass as root: refused (said so); claude-safe's options always pass.
    assert checks[("claude", "options")]["level"] == ("FAIL" if ROOT else "ok")
    if ROOT:
        assert "root/sudo" in checks[("claude", "options")]["text"]
    assert checks[("claude-safe", "options")]["level"] == "ok"
    assert checks[("codex", "options")]["level"] == "ok"
    # MCP wired: the real `claude mcp list` starts the town's server and connects.
    mcp = checks[("claude-safe", "mcp")]
    assert mcp["level"] == "ok" and "✔ Connected" in mcp["text"], mcp


async def _settled(town: Town) -> list[Agent] | None:
    """Every agent once each has ended its first round the way a CLI that is not set up
    ends it: paused for setup (codex too: its round without network ends early, and its
    free login check says it is not logged in)."""
    agents = {a.name: a for a in await town.agents.list()}
    for name, _ in AGENTS:
        reason = agents[name].state_reason or ""
        if not (agents[name].state.value == "paused" and reason.startswith("setup:")):
            return None
    return list(agents.values())


async def test_a_town_of_real_clis_stops_for_setup_and_fails_no_task(
    real_env: dict[str, str], town_dir: Path
) -> None:
    config = TownConfig.load(town_dir)
    # codex waits for the network forever; its early stop should end the round long before.
    config.data["runtime"]["round_timeout"] = 90.0
    config.save()
    _spawn_all(real_env, town_dir)
    for name, _ in AGENTS:
        assigned = _tt(real_env, town_dir, "assign", name, "Say hello in one word.")
        assert assigned.returncode == 0, assigned.stderr
    town_proc = subprocess.Popen(
        [sys.executable, "-m", "tinytown", "run", "--no-repl"],
        cwd=town_dir,
        env=real_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        async with await Town.connect(town_dir) as town:
            started = trio.current_time()
            agents = cast(list[Agent], await eventually(lambda: _settled(town), 150, 0.5))
            took = trio.current_time() - started
            tasks = await town.tasks.list()
            events = _tt(real_env, town_dir, "events", "-n", "200", "--json")
    finally:
        town_proc.send_signal(signal.SIGTERM)
        try:
            out, _ = town_proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            town_proc.kill()
            out, _ = town_proc.communicate()
    by_name = {a.name: a for a in agents}
    for agent in by_name.values():  # what each real CLI said, in the test's output
        print(f"{agent.name} ({agent.cli}): {agent.state.value}, {agent.state_reason}")
    words = {
        "ann": "root/sudo privileges" if ROOT else "Not logged in",
        "sam": "Not logged in",
        "gem": "set an Auth method",
    }
    for name, expected in words.items():
        assert expected in (by_name[name].state_reason or ""), (name, by_name[name], out)
    # The CLI's own sentence, not a line of its JSON (gemini prints it on stderr).
    assert (by_name["gem"].state_reason or "").startswith("setup: Please set an Auth method")
    codex = by_name["cody"].state_reason or ""
    # Without network: its login check's words; with one: the service's refusal (401).
    assert codex.startswith("setup: "), (codex, out)
    assert "Not logged in" in codex or "401" in codex or "auth" in codex.lower(), (codex, out)
    assert took < 90, "codex's round should end on 'waiting for network', not the timeout"
    assert len(tasks) == len(AGENTS)
    assert not [t for t in tasks if t.state is TaskState.FAILED], tasks
    assert "Traceback" not in out
    # An event says so for each agent stopped for setup (and the supervisor gets mail).
    setup_events = [e for e in json.loads(events.stdout) if e.get("kind") == "setup"]
    assert {by_id(agents, e.get("agent")) for e in setup_events} >= {"ann", "sam", "gem"}


def by_id(agents: list[Agent], agent_id: object) -> str:
    return next((a.name for a in agents if a.id == agent_id), "?")
