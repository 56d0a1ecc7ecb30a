"""tt status: who hosts the agents, relative times, no stale tasks, a table that fits,
colour on a terminal only (NO_COLOR respected)."""

from __future__ import annotations

import datetime
import os
import pty
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import attrs
import pytest
import trio

from tests.cli.clihelp import ok, ok_json, parallel
from tests.gitrepo import commit_file
from tinytown.cli import status
from tinytown.cli.status import NOT_HOSTED, agent_table, live_task, state_shown
from tinytown.model import Agent, AgentState, Task, TaskState, dumps, new_id
from tinytown.model.ids import format_time, now
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town
from tinytown.services.workspace import worktrees
from tinytown.services.workspace.worktrees import WorkState
from tinytown.store import indexes

ESC = "\x1b["


@pytest.fixture
async def hosted(town: Town) -> AsyncIterator[Runtime]:
    """The town's runtime, served in the test's own trio run."""
    rt = Runtime(town, echo_events=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        yield rt
        nursery.cancel_scope.cancel()


def _agent_rows(out: str) -> dict[str, str]:
    part = out.split("\nAgents (", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0]: line for line in part.splitlines()[2:]}


async def test_agents_without_a_runtime_say_so(tt, town: Town) -> None:
    await town.agents.spawn("alice")
    await town.tasks.assign("alice", "Build it")
    out, data = parallel(partial(tt, "status"), partial(tt, "status", "--json"))
    text = ok(out)
    assert "Agents (1; 1 not running: no runtime hosts them):" in text
    assert NOT_HOSTED in _agent_rows(text)["alice"]
    assert "starting" not in _agent_rows(text)["alice"]
    agent = ok_json(data)["agents"][0]
    assert agent["state"] == "starting"  # --json: the record unchanged, fields added
    assert agent["hosted"] is False and agent["state_shown"] == NOT_HOSTED
    assert "WORKTREE" not in text and agent["workspace"] is None  # no worktree: no column


async def test_a_stale_current_task_is_not_shown(tt, town: Town) -> None:
    alice = await town.agents.spawn("alice")
    await town.agents.spawn("bob")
    task = await town.tasks.assign("bob", "Finished by bob")
    await town.tasks.complete(task.id, "done")

    def stale(agent: Agent) -> tuple[Agent, list[list[str]]]:  # a killed holder's record
        return attrs.evolve(agent, current_task=task.id, state=AgentState.STOPPED), []

    await town.store.update(
        Agent, town.store.keys.agent(alice.id), stale, missing=lambda: AssertionError()
    )
    text, data = parallel(partial(tt, "status"), partial(tt, "status", "--json"))
    assert task.id[:8] not in _agent_rows(ok(text))["alice"]
    entry = next(a for a in ok_json(data)["agents"] if a["name"] == "alice")
    assert entry["current_task"] == task.id and entry["current_task_live"] is None


async def test_hosted_agents_relative_times_and_twenty_rows_fit(
    tt_env: dict[str, str], town: Town, hosted: Runtime
) -> None:
    names = [f"worker-with-a-long-name-{n:02d}" for n in range(22)]
    for name in names:
        await town.agents.spawn(name, role="researcher")
    env = {**tt_env, "COLUMNS": "70"}
    run = partial(
        subprocess.run,
        [sys.executable, "-m", "tinytown", "status"],
        cwd=town.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    with trio.fail_after(60):
        result = await trio.to_thread.run_sync(run)
    text = ok(result)
    runtime_line = next(line for line in text.splitlines() if line.startswith("Runtime:"))
    assert runtime_line.startswith("Runtime: running, pid ") and ", up " in runtime_line
    assert "T" not in runtime_line.split(", up ")[1]  # relative, not a timestamp
    table = text.split("\nAgents (", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert len(table) == 1 + 22
    assert all(len(line) <= 70 for line in table), table
    assert all("…" in line for line in table[1:])  # long names cut, marked
    assert len({line.split()[0] for line in table[1:]}) == 22  # and still told apart
    assert NOT_HOSTED not in text and ESC not in text  # hosted; a pipe gets no colour


def _status_on_a_pty(tt_env: dict[str, str], root: Path, **env: str) -> str:
    """`tt status` with stdout on a pseudo-terminal; what it printed."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tinytown", "status"],
            cwd=root,
            env={**tt_env, "TERM": "xterm", **env},
            stdout=follower,
            stderr=subprocess.PIPE,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == 0
        return b"".join(chunks).decode()
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


async def test_colour_on_a_terminal_only_and_never_with_no_color(
    tt_env: dict[str, str], town: Town
) -> None:
    await town.agents.spawn("alice")
    env = {k: v for k, v in tt_env.items() if k not in ("NO_COLOR", "COLUMNS")}
    coloured = await trio.to_thread.run_sync(_status_on_a_pty, env, town.root)
    assert ESC in coloured and "alice" in coloured
    plain = await trio.to_thread.run_sync(partial(_status_on_a_pty, env, town.root, NO_COLOR="1"))
    assert ESC not in plain and "alice" in plain


def test_table_api() -> None:
    """The same rules through the functions the command uses."""
    alice = Agent(new_id(), "alice", "Alice", "claude", state=AgentState.WORKING)
    mine = Task(new_id(), "A " + "long " * 30, TaskState.RUNNING, assigned_to=alice.id)
    theirs = attrs.evolve(mine, id=new_id(), assigned_to=new_id())
    tasks = {mine.id: mine, theirs.id: theirs}
    assert live_task(attrs.evolve(alice, current_task=mine.id), tasks) == mine
    assert live_task(attrs.evolve(alice, current_task=theirs.id), tasks) is None
    done = attrs.evolve(mine, state=TaskState.COMPLETED)
    assert live_task(attrs.evolve(alice, current_task=mine.id), {mine.id: done}) is None
    assert state_shown(alice, None, hosted=False) == NOT_HOSTED
    started = attrs.evolve(mine, started_at="2000-01-01T00:00:00Z")
    assert state_shown(alice, started, hosted=True).startswith("working ")
    assert state_shown(alice, started, hosted=True).endswith(" d")
    entry = {"hosted": True, "state_shown": "working", "current_task_live": mine.id, "inbox": 0}
    lines = agent_table([alice], [entry], tasks, width=60, color=True)
    assert all(len(line.replace(ESC + "32m", "").replace(ESC + "0m", "")) <= 60 for line in lines)
    assert "…" in lines[1] and ESC + "32mworking" + ESC + "0m" in lines[1]
    assert ESC not in "".join(agent_table([alice], [entry], tasks, width=60))


async def test_each_worktree_ahead_and_dirty(tt, gtown: Town) -> None:
    town = gtown
    for result in parallel(
        partial(tt, "spawn", "alice", "--worktree"),
        partial(tt, "spawn", "bob", "--worktree"),
        partial(tt, "spawn", "carol"),
    ):
        ok(result)
    alice = town.root / ".tt" / "worktrees" / "alice"
    commit_file(alice, "feature.txt", "feature\n", "add feature")
    (alice / "shared.txt").write_text("changed\n")
    (alice / "new.txt").write_text("untracked\n")
    text, data, deep = parallel(
        partial(tt, "status"), partial(tt, "status", "--json"), partial(tt, "status", "--deep")
    )
    rows = _agent_rows(ok(text))
    assert "WORKTREE" in ok(text).split("\nAgents (", 1)[1].splitlines()[1]
    assert rows["alice"].endswith("ahead 1, dirty 2 files")
    assert rows["bob"].endswith("ahead 0, dirty 0 files")
    assert rows["carol"].endswith("  -")  # works in the root: no worktree
    by_name = {a["name"]: a for a in ok_json(data)["agents"]}
    assert by_name["alice"]["workspace"] == {
        "base": "main",
        "ahead": 1,
        "dirty": 2,
        "missing": False,
    }
    assert by_name["bob"]["workspace"]["ahead"] == 0 and by_name["bob"]["workspace"]["dirty"] == 0
    assert by_name["carol"]["workspace"] is None
    assert "worktree_summary" not in by_name["alice"]  # plain status: git's numbers only
    line = "  worktree: .tt/worktrees/alice on tt/alice: ahead 1, dirty 2 files\n"
    assert line in ok(deep)
    # The API says the same.
    state = await town.workspaces.state("alice")
    assert (state.ahead, len(state.dirty)) == (1, 2)
    summary = await town.workspaces.summary(await town.agents.resolve("alice"))
    assert f"  worktree: {summary}\n" == line
    assert await town.workspaces.summary(await town.agents.resolve("carol")) is None


async def test_git_trouble_is_a_question_mark_and_deep_says_why(tt, gtown: Town) -> None:
    town = gtown
    ok(tt("spawn", "alice", "--worktree"))
    town.config.set("workspace.base", "no-such-branch")
    text, data, deep = parallel(
        partial(tt, "status"), partial(tt, "status", "--json"), partial(tt, "status", "--deep")
    )
    assert _agent_rows(ok(text))["alice"].endswith("  ?")
    error = ok_json(data)["agents"][0]["workspace"]["error"]
    assert "[workspace] base 'no-such-branch' is not a local branch" in error
    assert f"  worktree: .tt/worktrees/alice on tt/alice: {error}\n" in ok(deep)


async def test_worktrees_are_read_concurrently_and_only_for_agents_with_one(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = await town.agents.spawn("base")
    agents = [attrs.evolve(base, id=f"id{n}", worktree=f"w/{n}") for n in range(12)]
    agents.append(base)  # no worktree: never asked
    asked: list[str] = []
    running = 0
    most = 0
    all_in = trio.Event()

    async def state(config: object, agent: Agent) -> WorkState:
        nonlocal running, most
        asked.append(agent.id)
        running += 1
        most = max(most, running)
        if most == status.GIT_PARALLEL:
            all_in.set()
        await all_in.wait()  # read one at a time, the first would wait here for ever
        running -= 1
        return WorkState("main", int(agent.id[2:]), ())

    monkeypatch.setattr(worktrees, "state", state)
    with trio.fail_after(5):
        found = await status.worktree_states(town, agents)
    assert most == status.GIT_PARALLEL  # concurrent, and bounded
    assert sorted(asked) == sorted(a.id for a in agents[:-1])
    assert {k: v.ahead for k, v in found.items() if isinstance(v, WorkState)} == {
        f"id{n}": n for n in range(12)
    }
    assert await status.worktree_states(town, [base]) == {}


async def test_deep_heartbeat_is_the_fresher_of_record_and_hash(tt, town: Town) -> None:
    """The runtime beats in the heartbeat hash and refreshes records about once a minute:
    --deep shows the fresher of the two (services.recovery.heartbeat_age)."""
    alice = await town.agents.spawn("alice")
    ten_minutes_ago = format_time(
        datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    )
    old = attrs.evolve(alice, last_heartbeat=ten_minutes_ago)
    await town.redis.execute("SET", town.keys.agent(alice.id), dumps(old))

    def shown() -> tuple[float, str]:
        data, text = parallel(
            partial(tt, "status", "--deep", "--json"), partial(tt, "status", "--deep")
        )
        line = next(x for x in ok(text).splitlines() if "heartbeat:" in x)
        return ok_json(data)["agents"][0]["heartbeat_age_seconds"], line

    age, line = shown()
    assert 590 < age < 700 and "heartbeat: 10 min ago" in line  # the record only
    await indexes.beat(town.store, [alice.id], now())
    age, line = shown()
    assert age < 60 and "min ago" not in line  # "just now", or seconds on a busy machine
