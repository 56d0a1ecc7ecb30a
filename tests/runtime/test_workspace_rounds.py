"""A real round in a worktree: its environment, its commits on the event and the task."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.gitrepo import git, git_env, make_repo
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town


@pytest.fixture
async def gtown(
    town_dir: Path, tt_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Town]:
    git_env(monkeypatch, town_dir.parent / "git-home", tt_env)
    make_repo(town_dir)
    town = await Town.connect(town_dir)
    try:
        yield town
    finally:
        await town.aclose()


async def run_until_cold(town: Town, name: str) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(Runtime(town).serve)
        with trio.fail_after(60):
            await town.agents.wait(name)
        nursery.cancel_scope.cancel()


async def test_a_round_records_its_commits_and_what_it_left(gtown: Town) -> None:
    repo = gtown.root
    base = git(repo, "rev-parse", "main")
    agent = await gtown.agents.spawn("alice", worktree=True, max_rounds=1)
    task = await gtown.tasks.assign(
        "alice", "env TT_WORKTREE; env TT_BRANCH; write a.txt A; commit add a; write wip.txt W"
    )
    last = await gtown.store.events.last_id()
    await run_until_cold(gtown, "alice")
    path = repo / ".tt" / "worktrees" / "alice"
    log = (repo / ".tt" / "logs" / "alice.log").read_text()
    assert f"TT_WORKTREE={path}" in log and "TT_BRANCH=tt/alice" in log
    tip = git(path, "rev-parse", "HEAD")
    stored = await gtown.tasks.get(task.id)
    assert stored.commits == (f"{base[:12]}..{tip[:12]}",)
    [event] = [e for e in await gtown.store.events.after(last) if e.kind == "commits"]
    assert (event.agent, event.fields["commits"], event.fields["dirty"]) == (agent.id, "1", "1")
    assert event.fields["task"] == task.id
    assert event.text == "alice: round made 1 commit; 1 uncommitted file left in its worktree"


async def test_autocommit_leaves_nothing_uncommitted(gtown: Town) -> None:
    gtown.config.set("workspace.autocommit", "true")
    await gtown.agents.spawn("alice", worktree=True, max_rounds=1)
    task = await gtown.tasks.assign("alice", "write wip.txt W")
    await run_until_cold(gtown, "alice")
    path = gtown.root / ".tt" / "worktrees" / "alice"
    assert git(path, "status", "--porcelain") == ""
    assert git(path, "log", "-1", "--format=%s") == f"tt: alice round 1 for task {task.id}"
    assert len((await gtown.tasks.get(task.id)).commits) == 1
