"""Workspaces through `tt` (issue 12): spawn --worktree, diff, merge, prune, rescue, and a
kill -9 of the runtime in the middle of a merge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import TtRunner
from tests.gitrepo import commit_file, git
from tinytown.services.workspace import merges

RUN = [sys.executable, "-m", "tinytown", "run", "--no-repl"]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The one ``tt:`` line of a refused command."""
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tt: "), result.stderr
    return lines[0]


@pytest.fixture
def runtime_proc(repo: Path, tt_env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start `tt run` processes with ``start()``; all are stopped at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def start_runtime(repo: Path, env: dict[str, str], procs: list[subprocess.Popen[bytes]]) -> None:
    log = open(repo.parent / "runtime.log", "ab")
    proc = subprocess.Popen(
        RUN, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    procs.append(proc)


def test_spawn_worktree_diff_and_status(tt: TtRunner, repo: Path) -> None:
    out = ok(tt("spawn", "alice", "--worktree"))
    assert "Works in .tt/worktrees/alice on branch tt/alice." in out
    path = repo / ".tt" / "worktrees" / "alice"
    commit_file(path, "feature.txt", "feature\n", "add feature")
    (path / "shared.txt").write_text("one\nTWO\nthree\n")
    diff = ok(tt("diff", "alice"))
    assert "+feature" in diff and "+TWO" in diff
    deep = ok(tt("status", "--deep"))
    assert "  worktree: .tt/worktrees/alice on tt/alice: ahead 1, dirty 1 file\n" in deep
    stat = ok(tt("diff", "alice", "--stat"))
    assert "feature.txt" in stat and "2 files changed" in stat
    ok(tt("spawn", "bob"))
    assert "has no worktree" in refused(tt("diff", "bob"))
    # the repository tracks tinytown.toml, so the worktree has a copy: still the same town
    assert (path / "tinytown.toml").is_file()
    assert f"Root:    {repo}\n" in ok(tt("status", cwd=path))
    ok(tt("spawn", "carol", "--worktree"))
    assert ok(tt("diff", "carol")) == "No changes against the base.\n"


def test_spawn_worktree_outside_git_is_one_line(tt: TtRunner, town_dir: Path) -> None:
    line = refused(tt("spawn", "alice", "--worktree"))
    assert line == (
        f"tt: {town_dir} is not in a git repository; worktrees need one ('git init' it first)."
    )
    assert "No agents" in ok(tt("list"))


def test_merge_dry_run_queue_and_wait(
    tt: TtRunner, repo: Path, tt_env: dict[str, str], runtime_proc: list[subprocess.Popen[bytes]]
) -> None:
    ok(tt("spawn", "alice", "--worktree"))
    ok(tt("spawn", "bob", "--worktree"))
    tip = commit_file(repo / ".tt/worktrees/alice", "a.txt", "a\n", "alice's work")
    commit_file(repo / ".tt/worktrees/bob", "shared.txt", "bob\n", "bob's version")
    commit_file(repo, "shared.txt", "base\n", "base moves")
    dry = tt("merge", "--all", "--dry-run")
    assert dry.returncode == 1  # bob's would conflict
    assert "clean: 1 commit of tt/alice would merge into main (merge commit)." in dry.stdout
    assert "conflict: tt/bob would conflict with main in shared.txt." in dry.stdout
    before = git(repo, "rev-parse", "main")
    queued = ok(tt("merge", "alice"))
    assert queued.strip() == (
        "Queued alice (tt/alice) for merging, first in the queue; the town merges it when it"
        " runs ('tt run')."
    )
    assert git(repo, "rev-parse", "main") == before  # nothing happens without the town
    start_runtime(repo, tt_env, runtime_proc)
    done = tt("merge", "alice", "bob", "--wait", "--timeout", "60")
    assert done.returncode == 1, done.stderr  # bob's conflict
    # alice was queued before the town started: the town may merge that request before
    # this one arrives (then this one finds it already in main). Either way it landed once.
    assert (
        "merged: alice: merged 1 commit of tt/alice into main." in done.stdout
        or "up-to-date: alice: tt/alice is already in main." in done.stdout
    ), done.stdout
    assert "conflict: bob: tt/bob conflicts with main in shared.txt." in done.stdout
    assert git(repo, "rev-parse", "main^2") == tip
    assert (repo / "shared.txt").read_text() == "base\n"


def test_merge_usage_errors(tt: TtRunner, repo: Path) -> None:
    assert "Name the agents to merge, or give --all" in refused(tt("merge"), 2)
    ok(tt("spawn", "bob"))
    assert "has no worktree" in refused(tt("merge", "bob"))
    assert "No agent has a worktree" in ok(tt("merge", "--all"))


def test_prune_refuses_then_force_rescues_and_restore(tt: TtRunner, repo: Path) -> None:
    ok(tt("spawn", "alice", "--worktree"))
    path = repo / ".tt" / "worktrees" / "alice"
    (path / "wip.txt").write_text("work in progress\n")
    ok(tt("kill", "alice"))
    line = refused(tt("prune"))
    assert line.startswith("tt: Agent alice has 1 uncommitted file in .tt/worktrees/alice;")
    assert (path / "wip.txt").exists()
    assert "alice" in ok(tt("list"))
    assert "Removed 1 agent(s): alice." in ok(tt("prune", "--force"))
    assert not path.exists()
    listing = ok(tt("rescue", "list"))
    assert "alice" in listing and "tt rescue: uncommitted changes of alice" in listing
    assert "Restored alice as branch tt/alice" in ok(tt("rescue", "restore", "alice"))
    ok(tt("spawn", "alice", "--worktree"))
    assert (path / "wip.txt").read_text() == "work in progress\n"
    assert "restore with --branch NEW" in refused(tt("rescue", "restore", "alice"))
    assert "No rescued work named 'ghost'" in refused(tt("rescue", "restore", "ghost"))


def test_kill_9_during_a_merge_leaves_base_and_the_next_run_cleans_up(
    tt: TtRunner, repo: Path, tt_env: dict[str, str], runtime_proc: list[subprocess.Popen[bytes]]
) -> None:
    pid_file, go = repo.parent / "check.pid", repo.parent / "check-go"
    script = (
        "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid()))\n"
        "while not os.path.exists(sys.argv[2]): time.sleep(0.01)"
    )
    ok(tt("config", "workspace.check", f'{sys.executable} -c "{script}" {pid_file} {go}'))
    ok(tt("spawn", "alice", "--worktree"))
    tip = commit_file(repo / ".tt/worktrees/alice", "a.txt", "a\n", "alice's work")
    before = git(repo, "rev-parse", "main")
    ok(tt("merge", "alice"))
    start_runtime(repo, tt_env, runtime_proc)
    first = runtime_proc[0]
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    assert (repo / merges.SCRATCH).is_dir()  # the merge is under way
    first.send_signal(signal.SIGKILL)
    first.wait()
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # a real crash may leave the check
    assert git(repo, "rev-parse", "main") == before  # never half-merged
    assert (repo / merges.SCRATCH).is_dir()
    go.touch()
    start_runtime(repo, tt_env, runtime_proc)
    # the request is still claimed: `tt merge` keeps it and --wait waits for its outcome
    # (or, when the new town merged it before this command arrived, finds it in main)
    result = tt("merge", "alice", "--wait", "--timeout", "60")
    assert result.stdout in (
        "merged: alice: merged 1 commit of tt/alice into main.\n",
        "up-to-date: alice: tt/alice is already in main.\n",
    ), result
    assert git(repo, "rev-parse", "main") == tip
    assert not (repo / merges.SCRATCH).exists()
    assert "merge queue: removed the scratch worktree" in (repo.parent / "runtime.log").read_text()


def wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
