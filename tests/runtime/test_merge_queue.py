"""The merge queue worked by the runtime, and the round hooks of workspaces (issue 12)."""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from tests.gitrepo import commit_file, git
from tests.runtime.conftest import eventually
from tinytown.model import Task
from tinytown.runtime import workspace_rounds
from tinytown.runtime.context import Context
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town
from tinytown.services.workspace import merges
from tinytown.services.workspace.requests import MergeRequest


async def serve(town: Town, nursery: trio.Nursery) -> Runtime:
    runtime = Runtime(town)
    await nursery.start(runtime.serve)
    return runtime


async def feature(town: Town, repo: Path, name: str, filename: str) -> str:
    agent = await town.agents.spawn(name, worktree=True, max_rounds=1)
    return commit_file(repo / agent.worktree, filename, f"{name}\n", f"{name}'s work")  # type: ignore[operator]


async def test_queued_branches_are_merged_one_at_a_time(gtown: Town, repo: Path) -> None:
    log = repo.parent / "checks.log"
    script = (
        "import sys, time; f = open(sys.argv[1], 'a'); f.write('start\\n'); f.flush();"
        " time.sleep(0.2); f.write('end\\n')"
    )
    gtown.config.set("workspace.check", f'{sys.executable} -c "{script}" {log}')
    await feature(gtown, repo, "alice", "a.txt")
    await feature(gtown, repo, "bob", "b.txt")
    after = await gtown.store.events.last_id()
    first = await gtown.workspaces.merge("alice")
    second = await gtown.workspaces.merge("bob")
    assert (first.position, second.position) == (1, 2)
    again = await gtown.workspaces.merge("alice")
    assert (again.new, again.request.id) == (False, first.request.id)  # keeps its place
    async with trio.open_nursery() as nursery:
        await serve(gtown, nursery)
        with trio.fail_after(30):
            one = await gtown.workspaces.wait_merged(first.request, after)
            two = await gtown.workspaces.wait_merged(second.request, after)
        nursery.cancel_scope.cancel()
    assert (one["status"], two["status"]) == ("merged", "merged"), (one, two)
    assert (repo / "a.txt").exists() and (repo / "b.txt").exists()
    assert {"a.txt", "b.txt"} <= set(git(repo, "ls-tree", "--name-only", "main").split())
    assert log.read_text() == "start\nend\nstart\nend\n"  # never two at once
    assert await gtown.workspaces.requests.queued() == []


async def test_conflict_with_on_conflict_task_sends_the_agent_a_task(
    gtown: Town, repo: Path
) -> None:
    gtown.config.set("workspace.on_conflict", "task")
    agent = await gtown.agents.spawn("alice", worktree=True)
    commit_file(repo / agent.worktree, "shared.txt", "alice\n", "alice's version")  # type: ignore[operator]
    before = commit_file(repo, "shared.txt", "base\n", "base's version")
    after = await gtown.store.events.last_id()
    queued = await gtown.workspaces.merge("alice")
    async with trio.open_nursery() as nursery:
        await serve(gtown, nursery)
        with trio.fail_after(30):
            fields = await gtown.workspaces.wait_merged(queued.request, after)
        nursery.cancel_scope.cancel()
    assert fields["status"] == "conflict" and fields["files"] == "shared.txt"
    assert "conflicts with main in shared.txt" in fields["text"]
    assert git(repo, "rev-parse", "main") == before
    tasks = await gtown.tasks.list(agent=agent.id)
    assert len(tasks) == 1
    assert "could not be merged: it conflicts with main in shared.txt" in tasks[0].description


async def test_a_request_claimed_by_a_crashed_runtime_is_merged_by_the_next(
    gtown: Town, repo: Path
) -> None:
    tip = await feature(gtown, repo, "alice", "a.txt")
    agent = await gtown.agents.resolve("alice")
    # What a runtime killed mid-merge leaves: the request claimed, a scratch worktree.
    req = MergeRequest("0" * 8 + "-0000-4000-8000-" + "0" * 12, agent.id, "alice", "tt/alice", "x")
    await gtown.store.run_ops([["RPUSH", gtown.keys.merges_claimed, req.dumps()]])
    git(repo, "worktree", "add", "--detach", str(repo / merges.SCRATCH), "main")
    (repo / merges.SCRATCH / "half-merged.txt").write_text("junk\n")
    async with trio.open_nursery() as nursery:
        await serve(gtown, nursery)
        with trio.fail_after(30):
            fields = await gtown.workspaces.wait_merged(req, "0-0")
        nursery.cancel_scope.cancel()
    assert fields["status"] == "merged"
    assert git(repo, "rev-parse", "main") == tip
    assert not (repo / merges.SCRATCH).exists()
    assert await gtown.workspaces.requests.queued() == []


async def test_shutdown_mid_check_leaves_base_and_the_request(gtown: Town, repo: Path) -> None:
    started, go = repo.parent / "check-started", repo.parent / "check-go"
    script = (
        "import os, sys, time; open(sys.argv[1], 'w').close()\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.01)"
    )
    gtown.config.set("workspace.check", f'{sys.executable} -c "{script}" {started} {go}')
    tip = await feature(gtown, repo, "alice", "a.txt")
    before = git(repo, "rev-parse", "main")
    queued = await gtown.workspaces.merge("alice")
    async with trio.open_nursery() as nursery:
        await serve(gtown, nursery)
        await eventually(lambda: trio.to_thread.run_sync(started.exists), timeout=30)
        assert (repo / merges.SCRATCH).is_dir()  # mid-merge
        nursery.cancel_scope.cancel()  # the town stops while the check runs
    assert git(repo, "rev-parse", "main") == before
    assert not (repo / merges.SCRATCH).exists()
    assert [r.id for r in await gtown.workspaces.requests.queued()] == [queued.request.id]
    go.touch()
    async with trio.open_nursery() as nursery:
        await serve(gtown, nursery)
        with trio.fail_after(30):
            fields = await gtown.workspaces.wait_merged(queued.request, "0-0")
        nursery.cancel_scope.cancel()
    assert fields["status"] == "merged"
    assert git(repo, "rev-parse", "main") == tip


# -- rounds in a worktree -------------------------------------------------------------------


async def test_round_hooks_record_commits_and_uncommitted_work(gtown: Town, repo: Path) -> None:
    ctx = Context(gtown)
    agent = await gtown.agents.spawn("alice", worktree=True)
    path = repo / agent.worktree  # type: ignore[operator]
    task = await gtown.tasks.assign("alice", "write things")
    assert workspace_rounds.round_env(ctx, agent)["TT_BRANCH"] == "tt/alice"
    before = await workspace_rounds.before_round(ctx, agent)
    assert before == git(repo, "rev-parse", "main")
    commit_file(path, "one.txt", "1\n", "one")
    after = commit_file(path, "two.txt", "2\n", "two")
    (path / "wip.txt").write_text("not committed\n")
    last = await gtown.store.events.last_id()
    done = await workspace_rounds.after_round(ctx, agent, before, [task.id])
    assert done is not None and (done.commits, done.dirty, done.after) == (2, 1, after)
    [event] = [e for e in await gtown.store.events.after(last) if e.kind == "commits"]
    assert event.fields["commits"] == "2" and event.fields["dirty"] == "1"
    assert event.fields["before"] == before and event.fields["after"] == after
    assert "1 uncommitted file left in its worktree" in event.text
    stored = await gtown.store.get(Task, gtown.keys.task(task.id))
    assert stored is not None and stored.commits == (f"{before[:12]}..{after[:12]}",)
    # a retried round records the same span once
    await workspace_rounds.after_round(ctx, agent, before, [task.id])
    stored = await gtown.store.get(Task, gtown.keys.task(task.id))
    assert stored is not None and len(stored.commits) == 1


async def test_autocommit_commits_the_round_with_the_task_id(gtown: Town, repo: Path) -> None:
    gtown.config.set("workspace.autocommit", "true")
    ctx = Context(gtown)
    agent = await gtown.agents.spawn("alice", worktree=True)
    path = repo / agent.worktree  # type: ignore[operator]
    task = await gtown.tasks.assign("alice", "write things")
    before = await workspace_rounds.before_round(ctx, agent)
    (path / "wip.txt").write_text("work\n")
    done = await workspace_rounds.after_round(ctx, agent, before, [task.id])
    assert done is not None and (done.commits, done.dirty) == (1, 0)
    assert task.id in git(path, "log", "-1", "--format=%s")
    assert git(path, "status", "--porcelain") == ""


async def test_round_hooks_cost_nothing_without_a_worktree(gtown: Town) -> None:
    ctx = Context(gtown)
    agent = await gtown.agents.spawn("bob")
    assert await workspace_rounds.before_round(ctx, agent) is None
    assert await workspace_rounds.after_round(ctx, agent, None, []) is None
    assert workspace_rounds.round_env(ctx, agent) == {}


async def test_agents_run_in_their_own_worktrees(gtown: Town, repo: Path) -> None:
    """Isolation: two agents edit the same file on their own branches; the root and each
    other's worktree never see it until merged."""
    for name in ("alice", "bob"):
        await gtown.agents.spawn(name, worktree=True, max_rounds=1)
        await gtown.tasks.assign(
            name, f"cwd; write shared.txt {name} was here; commit {name} edits shared.txt"
        )
    async with trio.open_nursery() as nursery:
        await serve(gtown, nursery)
        with trio.fail_after(60):
            for name in ("alice", "bob"):
                await gtown.agents.wait(name)
        nursery.cancel_scope.cancel()
    for name in ("alice", "bob"):
        assert git(repo, "show", f"tt/{name}:shared.txt") == f"{name} was here"
        assert (
            repo / ".tt" / "worktrees" / name / "shared.txt"
        ).read_text() == f"{name} was here\n"
        log = (repo / ".tt" / "logs" / f"{name}.log").read_text()
        assert f"cwd={repo / '.tt' / 'worktrees' / name}" in log
    assert (repo / "shared.txt").read_text() == "one\ntwo\nthree\n"
    assert git(repo, "log", "-1", "--format=%s", "main") == "initial"


async def test_scope_is_relative_to_the_worktree(gtown: Town, repo: Path) -> None:
    ctx = Context(gtown)
    agent = await gtown.agents.spawn("alice", worktree=True, scope="sub")
    worktree = repo / ".tt" / "worktrees" / "alice"
    assert ctx.workdir(agent) == worktree  # no such directory in the worktree: its top
    (worktree / "sub").mkdir()
    assert ctx.workdir(agent) == worktree / "sub"
    (repo / "only-at-root").mkdir()
    other = await gtown.agents.spawn("bob", worktree=True, scope="only-at-root")
    assert ctx.workdir(other) == repo / ".tt" / "worktrees" / "bob"
