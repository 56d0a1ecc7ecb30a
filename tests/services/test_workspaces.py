"""Workspaces through the Python API, with real git in temporary repositories (issue 12)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from tests.gitrepo import commit_file, git
from tinytown.errors import AlreadyExistsError, ConfigError, NotFoundError
from tinytown.services.town import Town
from tinytown.services.workspace import merges
from tinytown.services.workspace import worktrees as workspaces
from tinytown.services.workspace.git import NotARepositoryError, town_lock
from tinytown.services.workspace.worktrees import LostWorkError


def set_config(town: Town, key: str, value: str) -> None:
    town.config.set(key, value)


# -- worktrees ---------------------------------------------------------------------------


async def test_spawn_worktree_makes_a_branch_from_the_base(gtown: Town, repo: Path) -> None:
    base = git(repo, "rev-parse", "main")
    agent = await gtown.agents.spawn("alice", worktree=True)
    assert (agent.worktree, agent.branch) == (".tt/worktrees/alice", "tt/alice")
    path = repo / ".tt" / "worktrees" / "alice"
    assert git(path, "rev-parse", "--abbrev-ref", "HEAD") == "tt/alice"
    assert git(path, "rev-parse", "HEAD") == base
    assert (path / "shared.txt").read_text() == "one\ntwo\nthree\n"
    stored = await gtown.agents.get(agent.id)
    assert stored.worktree == ".tt/worktrees/alice"
    assert workspaces.env_for(gtown.config, stored) == {
        "TT_WORKTREE": str(path),
        "TT_BRANCH": "tt/alice",
    }
    # the root checkout is untouched: the worktree lives in the ignored .tt/
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


async def test_spawn_without_worktree_stays_shared(gtown: Town, repo: Path) -> None:
    agent = await gtown.agents.spawn("bob")
    assert agent.worktree is None and agent.branch is None
    assert not (repo / ".tt" / "worktrees" / "bob").exists()


async def test_mode_worktree_is_the_town_default(gtown: Town, repo: Path) -> None:
    set_config(gtown, "workspace.mode", "worktree")
    agent = await gtown.agents.spawn("carol")
    assert agent.branch == "tt/carol"
    shared = await gtown.agents.spawn("dave", worktree=False)  # --no-worktree wins
    assert shared.worktree is None


async def test_bad_mode_value_is_one_sentence(gtown: Town) -> None:
    gtown.config.data.setdefault("workspace", {})["mode"] = "sideways"
    gtown.config.save()
    with pytest.raises(ConfigError, match=r"'workspace.mode' must be 'shared' or 'worktree'"):
        await gtown.agents.spawn("erin")
    assert await gtown.agents.list() == []


async def test_worktree_outside_git_is_a_clear_error(town: Town, town_dir: Path) -> None:
    with pytest.raises(NotARepositoryError, match="is not in a git repository"):
        await town.agents.spawn("alice", worktree=True)
    assert await town.agents.list() == []
    assert not (town_dir / ".tt" / "worktrees").exists()


async def test_same_name_twice_leaves_the_first_worktree(gtown: Town, repo: Path) -> None:
    await gtown.agents.spawn("alice", worktree=True)
    (repo / ".tt" / "worktrees" / "alice" / "notes.txt").write_text("mine\n")
    with pytest.raises(AlreadyExistsError):
        await gtown.agents.spawn("alice", worktree=True)
    assert (repo / ".tt" / "worktrees" / "alice" / "notes.txt").exists()


# -- what a workspace holds ---------------------------------------------------------------


async def test_state_and_diff_show_committed_and_uncommitted(gtown: Town, repo: Path) -> None:
    agent = await gtown.agents.spawn("alice", worktree=True)
    path = repo / agent.worktree  # type: ignore[operator]
    commit_file(path, "feature.txt", "feature\n", "add feature")
    (path / "shared.txt").write_text("one\nTWO\nthree\n")  # uncommitted
    (path / "scratch.txt").write_text("new\n")  # untracked
    state = await gtown.workspaces.state("alice")
    assert (state.ahead, sorted(state.dirty)) == (1, ["scratch.txt", "shared.txt"])
    assert state.describe() == "ahead 1, dirty 2 files"
    text = await gtown.workspaces.diff("alice")
    assert "+feature" in text and "+TWO" in text and "-two" in text
    assert text.rstrip().endswith("untracked: scratch.txt")
    stat = await gtown.workspaces.diff("alice", stat=True)
    assert "feature.txt" in stat and "shared.txt" in stat and "+feature" not in stat


async def test_diff_of_a_shared_agent_is_refused(gtown: Town) -> None:
    await gtown.agents.spawn("bob")
    with pytest.raises(Exception, match="has no worktree"):
        await gtown.workspaces.diff("bob")


# -- merging ---------------------------------------------------------------------------


async def test_clean_merge_fast_forwards_base_and_the_root(gtown: Town, repo: Path) -> None:
    agent = await gtown.agents.spawn("alice", worktree=True)
    tip = commit_file(repo / agent.worktree, "feature.txt", "feature\n", "add feature")  # type: ignore[operator]
    preview = await gtown.workspaces.preview("alice")
    assert preview.status == "clean" and "fast-forward" in preview.text
    assert git(repo, "rev-parse", "main") != tip  # a preview changes nothing
    outcome = await gtown.workspaces.merge_now("alice")
    assert outcome.status == "merged", outcome
    assert git(repo, "rev-parse", "main") == tip
    assert (repo / "feature.txt").read_text() == "feature\n"  # the root checkout followed
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert not (repo / merges.SCRATCH).exists()
    assert (await gtown.workspaces.state("alice")).ahead == 0
    again = await gtown.workspaces.merge_now("alice")
    assert again.status == "up-to-date"


async def test_merge_commit_when_the_base_moved(gtown: Town, repo: Path) -> None:
    agent = await gtown.agents.spawn("alice", worktree=True)
    commit_file(repo / agent.worktree, "feature.txt", "feature\n", "add feature")  # type: ignore[operator]
    moved = commit_file(repo, "other.txt", "other\n", "base moves on")
    outcome = await gtown.workspaces.merge_now("alice")
    assert outcome.status == "merged"
    head = git(repo, "rev-parse", "main")
    assert git(repo, "rev-parse", "main^1") == moved
    assert git(repo, "log", "-1", "--format=%s", head) == "Merge tt/alice (alice) into main"
    assert (repo / "feature.txt").exists() and (repo / "other.txt").exists()


async def test_conflicting_merge_leaves_base_untouched(gtown: Town, repo: Path) -> None:
    agent = await gtown.agents.spawn("alice", worktree=True)
    commit_file(repo / agent.worktree, "shared.txt", "alice\n", "alice's version")  # type: ignore[operator]
    before = commit_file(repo, "shared.txt", "base\n", "base's version")
    preview = await gtown.workspaces.preview("alice")
    assert preview.status == "conflict" and preview.files == ("shared.txt",)
    outcome = await gtown.workspaces.merge_now("alice")
    assert outcome.status == "conflict"
    assert outcome.files == ("shared.txt",)
    assert "conflicts with main in shared.txt" in outcome.text
    assert git(repo, "rev-parse", "main") == before
    assert (repo / "shared.txt").read_text() == "base\n"
    assert not (repo / merges.SCRATCH).exists()


async def test_failing_check_leaves_base_untouched(gtown: Town, repo: Path) -> None:
    set_config(
        gtown,
        "workspace.check",
        f"{sys.executable} -c \"import sys; print('3 tests failed'); sys.exit(3)\"",
    )
    agent = await gtown.agents.spawn("alice", worktree=True)
    commit_file(repo / agent.worktree, "feature.txt", "feature\n", "add feature")  # type: ignore[operator]
    before = git(repo, "rev-parse", "main")
    outcome = await gtown.workspaces.merge_now("alice")
    assert outcome.status == "check-failed"
    assert "failed (exit 3)" in outcome.text and "3 tests failed" in outcome.text
    assert git(repo, "rev-parse", "main") == before
    assert not (repo / "feature.txt").exists()


async def test_passing_check_runs_on_the_merged_tree(gtown: Town, repo: Path) -> None:
    # the check sees the merged files (and only lands if it passes)
    script = "import pathlib, sys; sys.exit(0 if pathlib.Path('feature.txt').exists() else 4)"
    set_config(gtown, "workspace.check", f'{sys.executable} -c "{script}"')
    agent = await gtown.agents.spawn("alice", worktree=True)
    tip = commit_file(repo / agent.worktree, "feature.txt", "feature\n", "add feature")  # type: ignore[operator]
    outcome = await gtown.workspaces.merge_now("alice")
    assert outcome.status == "merged", outcome
    assert git(repo, "rev-parse", "main") == tip


async def test_root_changes_to_merged_files_block_landing(gtown: Town, repo: Path) -> None:
    agent = await gtown.agents.spawn("alice", worktree=True)
    commit_file(repo / agent.worktree, "shared.txt", "alice\n", "alice's version")  # type: ignore[operator]
    before = git(repo, "rev-parse", "main")
    (repo / "shared.txt").write_text("someone's edit at the root\n")
    outcome = await gtown.workspaces.merge_now("alice")
    assert outcome.status == "error" and "uncommitted changes to shared.txt" in outcome.text
    assert git(repo, "rev-parse", "main") == before
    assert (repo / "shared.txt").read_text() == "someone's edit at the root\n"


async def test_failure_before_landing_leaves_base_and_cleans_scratch(
    gtown: Town, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await gtown.agents.spawn("alice", worktree=True)
    commit_file(repo / agent.worktree, "feature.txt", "feature\n", "add feature")  # type: ignore[operator]
    before = git(repo, "rev-parse", "main")
    seen: list[bool] = []

    async def crash(root: Path, base: str, old: str, new: str) -> None:
        seen.append((root / merges.SCRATCH).is_dir())  # mid-merge: the scratch exists
        raise RuntimeError("injected crash before update-ref")

    monkeypatch.setattr(merges, "land", crash)
    with pytest.raises(RuntimeError, match="injected"):
        await gtown.workspaces.merge_now("alice")
    assert seen == [True]
    assert git(repo, "rev-parse", "main") == before
    assert not (repo / merges.SCRATCH).exists()


async def test_crash_between_update_ref_and_root_is_finished_by_recover(
    gtown: Town, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await gtown.agents.spawn("alice", worktree=True)
    tip = commit_file(repo / agent.worktree, "feature.txt", "feature\n", "add feature")  # type: ignore[operator]

    async def crash(root: Path, old: str, new: str) -> None:
        raise RuntimeError("injected crash after update-ref")

    monkeypatch.setattr(merges, "_follow", crash)
    with pytest.raises(RuntimeError, match="injected"):
        await gtown.workspaces.merge_now("alice")
    assert git(repo, "rev-parse", "main") == tip  # after: landed, never half-merged
    assert not (repo / "feature.txt").exists()  # but the root's files lag
    assert (repo / merges.JOURNAL).exists()
    monkeypatch.undo()
    done = await merges.recover(gtown.config)
    assert done == ["the root's checkout of main follows the merge that landed"]
    assert (repo / "feature.txt").read_text() == "feature\n"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""
    assert await merges.recover(gtown.config) == []


async def test_recover_removes_a_scratch_worktree_left_by_a_crash(gtown: Town, repo: Path) -> None:
    git(repo, "worktree", "add", "--detach", str(repo / merges.SCRATCH), "main")
    done = await merges.recover(gtown.config)
    assert done == [f"removed the scratch worktree {merges.SCRATCH} of an interrupted merge"]
    assert not (repo / merges.SCRATCH).exists()
    assert ".merge" not in git(repo, "worktree", "list")


# -- work is never lost -----------------------------------------------------------------


async def test_prune_refuses_a_dirty_worktree_then_force_rescues(gtown: Town, repo: Path) -> None:
    agent = await gtown.agents.spawn("alice", worktree=True)
    path = repo / agent.worktree  # type: ignore[operator]
    commit_file(path, "feature.txt", "feature\n", "add feature")
    (path / "wip.txt").write_text("work in progress\n")
    await gtown.lifecycle.kill("alice")
    with pytest.raises(LostWorkError) as refused:
        await gtown.lifecycle.prune()
    assert str(refused.value).startswith(
        "Agent alice has 1 commit not in main and 1 uncommitted file in .tt/worktrees/alice;"
    )
    assert "\n" not in str(refused.value)
    assert (await gtown.agents.get(agent.id)).name == "alice"  # nothing changed
    assert (path / "wip.txt").exists()

    removed = await gtown.lifecycle.prune(force=True)
    assert [a.name for a in removed] == ["alice"]
    assert not path.exists()
    assert "tt/alice" not in git(repo, "branch", "--list")
    [saved] = await gtown.workspaces.rescues()
    assert saved.name == "alice" and saved.ref.startswith("refs/tt/rescue/alice/")
    assert git(repo, "show", f"{saved.commit}:wip.txt") == "work in progress"
    assert git(repo, "show", f"{saved.commit}:feature.txt") == "feature"

    branch, commit = await gtown.workspaces.restore("alice")
    assert (branch, commit) == ("tt/alice", saved.commit)
    again = await gtown.agents.spawn("alice", worktree=True)  # takes the restored branch
    assert (repo / again.worktree / "wip.txt").read_text() == "work in progress\n"  # type: ignore[operator]
    with pytest.raises(AlreadyExistsError, match="restore with --branch NEW"):
        await gtown.workspaces.restore("alice")
    other, _ = await gtown.workspaces.restore(saved.ref, branch="alice-rescued")
    assert git(repo, "rev-parse", other) == saved.commit


async def test_prune_of_a_merged_clean_worktree_needs_no_force(gtown: Town, repo: Path) -> None:
    agent = await gtown.agents.spawn("alice", worktree=True)
    commit_file(repo / agent.worktree, "feature.txt", "feature\n", "add feature")  # type: ignore[operator]
    assert (await gtown.workspaces.merge_now("alice")).status == "merged"
    await gtown.lifecycle.kill("alice")
    assert [a.name for a in await gtown.lifecycle.prune()] == ["alice"]
    assert not (repo / ".tt" / "worktrees" / "alice").exists()
    assert await gtown.workspaces.rescues() == []


async def test_restore_of_unknown_rescue(gtown: Town) -> None:
    with pytest.raises(NotFoundError, match="No rescued work named 'ghost'"):
        await gtown.workspaces.restore("ghost")


# -- the town's git lock -----------------------------------------------------------------


async def test_town_lock_serialises_and_a_cancelled_wait_lets_go(repo: Path) -> None:
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        async with town_lock(repo):
            with trio.move_on_after(0.2) as scope:  # waits, then is cancelled
                async with town_lock(repo):
                    order.append("never")
            assert scope.cancelled_caught

            async def second() -> None:
                async with town_lock(repo):
                    order.append("second")

            nursery.start_soon(second)
            await trio.sleep(0.05)
            order.append("first done")
    assert order == ["first done", "second"]
    with trio.fail_after(5):  # the abandoned waiter did not keep the lock
        async with town_lock(repo):
            pass


async def test_push_only_when_configured(gtown: Town, repo: Path) -> None:
    remote = repo.parent / "remote.git"
    git(repo.parent, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    pushed = git(remote, "rev-parse", "main")
    agent = await gtown.agents.spawn("alice", worktree=True)
    path = repo / agent.worktree  # type: ignore[operator]
    first = commit_file(path, "one.txt", "1\n", "one")
    assert (await gtown.workspaces.merge_now("alice")).status == "merged"
    assert git(remote, "rev-parse", "main") == pushed  # push = false: the remote is untouched
    set_config(gtown, "workspace.push", "true")
    second = commit_file(path, "two.txt", "2\n", "two")
    outcome = await gtown.workspaces.merge_now("alice")
    assert outcome.text.endswith("; pushed main to origin")
    assert git(remote, "rev-parse", "main") == second != first


async def test_base_moved_during_the_check_is_merged_again_never_overwritten(
    gtown: Town, repo: Path
) -> None:
    # The check moves the base once (as a person committing meanwhile would): the
    # compare-and-swap refuses the stale landing and the merge is done again on top.
    marker = repo.parent / "moved-once"
    script = (
        "import os, subprocess, sys\n"
        "if not os.path.exists(sys.argv[1]):\n"
        "    open(sys.argv[1], 'w').close()\n"
        "    subprocess.run(['git', '-C', sys.argv[2], 'commit', '-q', '--allow-empty',"
        " '-m', 'moved during the check'], check=True)"
    )
    set_config(gtown, "workspace.check", f'{sys.executable} -c "{script}" {marker} {repo}')
    agent = await gtown.agents.spawn("alice", worktree=True)
    commit_file(repo / agent.worktree, "feature.txt", "feature\n", "add feature")  # type: ignore[operator]
    outcome = await gtown.workspaces.merge_now("alice")
    assert outcome.status == "merged", outcome
    assert git(repo, "log", "-1", "--format=%s", "main^1") == "moved during the check"
    assert (repo / "feature.txt").exists()


async def test_a_failed_rescue_deletes_nothing(
    gtown: Town, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await gtown.agents.spawn("alice", worktree=True)
    path = repo / agent.worktree  # type: ignore[operator]
    (path / "wip.txt").write_text("work\n")

    async def broken(*args: object) -> str:
        raise RuntimeError("injected: the rescue ref could not be written")

    monkeypatch.setattr(workspaces, "_save", broken)
    with pytest.raises(RuntimeError, match="injected"):
        await workspaces.remove(gtown.config, agent, force=True)
    assert (path / "wip.txt").read_text() == "work\n"
    assert "tt/alice" in git(repo, "branch", "--list")


async def test_summary_line_for_status(gtown: Town, repo: Path) -> None:
    agent = await gtown.agents.spawn("alice", worktree=True)
    commit_file(repo / agent.worktree, "one.txt", "1\n", "one")  # type: ignore[operator]
    (repo / agent.worktree / "wip.txt").write_text("w\n")  # type: ignore[operator]
    line = await gtown.workspaces.summary(agent)
    assert line == ".tt/worktrees/alice on tt/alice: ahead 1, dirty 1 file"
    assert await gtown.workspaces.summary(await gtown.agents.spawn("bob")) is None
    gtown.config.set("workspace.base", "nope")
    assert "[workspace] base 'nope' is not a local branch" in (
        await gtown.workspaces.summary(agent) or ""
    )


async def test_a_check_past_the_round_timeout_fails_and_its_group_is_killed(
    gtown: Town, repo: Path
) -> None:
    pids = repo.parent / "pids"
    # the check starts a child (as pytest or make would) and both hang
    script = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open(sys.argv[1], 'w').write(f'{os.getpid()} {child.pid}')\n"
        "time.sleep(60)"
    )
    set_config(gtown, "workspace.check", f'{sys.executable} -c "{script}" {pids}')
    set_config(gtown, "runtime.round_timeout", "2")
    agent = await gtown.agents.spawn("alice", worktree=True)
    commit_file(repo / agent.worktree, "feature.txt", "feature\n", "add feature")  # type: ignore[operator]
    before = git(repo, "rev-parse", "main")
    outcome = await gtown.workspaces.merge_now("alice")
    assert outcome.status == "check-failed" and outcome.text.endswith("timed out")
    assert git(repo, "rev-parse", "main") == before
    for pid in map(int, pids.read_text().split()):
        with trio.fail_after(5):
            while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
                await trio.sleep(0.02)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "gone"
