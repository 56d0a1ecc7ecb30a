"""Merging an agent's branch into the base: in a scratch worktree, checked, then landed.

The steps (:func:`merge_branch`): under the town's git lock, a scratch worktree
``.tt/worktrees/.merge`` is made at the base; the agent's branch is merged there (a
fast-forward when the base has not moved, else a merge commit); the lock is let go while
``[workspace] check`` runs there; then, under the lock again, the base branch is moved
with ``git update-ref <base> <new> <old>`` -- a compare-and-swap, the one step that
changes the base. So a crash at any point leaves the base before or after the merge,
never between. If the base is checked out at the town root, that checkout follows (a
two-tree ``read-tree -m -u``, as git's own fast-forward does); a journal file
(``.tt/merge-landing``) lets the next run finish that step after a crash.
:func:`recover` (run when the merge queue starts) removes a scratch worktree left by a
crash and finishes a landing.

Cancellation: every function is cancellable. Cancelled before the ``update-ref``, the
base is untouched and the scratch worktree is removed (shielded, bounded); after it, the
merge has landed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
from pathlib import Path

import attrs
import trio

from tinytown.services.config import TownConfig
from tinytown.services.workspace.git import dirty_paths, git, git_names, is_ancestor, rev, town_lock
from tinytown.services.workspace.worktrees import WORKTREES, base_branch, identity_env, plural

SCRATCH = WORKTREES / ".merge"  # agent names cannot start with '.'
JOURNAL = Path(".tt") / "merge-landing"
#: Output of a failing check kept in the report.
CHECK_TAIL = 2000
#: How long clean-up of the scratch worktree may take when the merge is cancelled.
CLEANUP_DEADLINE = 10.0
#: Attempts when the base moves under a merge (someone committed to it meanwhile).
ATTEMPTS = 3


@attrs.frozen
class MergeOutcome:
    """What a merge did. ``status``: merged, up-to-date, conflict, check-failed, error;
    for a preview (dry run): clean, conflict, up-to-date, error."""

    status: str
    branch: str
    base: str
    text: str
    before: str | None = None
    after: str | None = None
    files: tuple[str, ...] = ()
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("merged", "up-to-date", "clean")


def _check_argv(config: TownConfig) -> list[str]:
    command = str(config.setting("workspace.check")).strip()
    return shlex.split(command) if command else []


async def preview(config: TownConfig, branch: str, dirty: int = 0) -> MergeOutcome:
    """What merging ``branch`` now would do, changing nothing (``tt merge --dry-run``):
    git's in-memory merge (``merge-tree --write-tree``) finds conflicts without touching
    any worktree. ``dirty``: uncommitted files of the agent, which a merge leaves out."""
    base = await base_branch(config)
    old, tip = await rev(config.root, base), await rev(config.root, branch)
    if tip is None or old is None:
        return MergeOutcome("error", branch, base, f"branch {branch} does not exist")
    left_out = f"; {plural(dirty, 'uncommitted file')} not included" if dirty else ""
    if await is_ancestor(config.root, tip, old):
        return MergeOutcome("up-to-date", branch, base, f"{branch} is already in {base}{left_out}")
    count = int((await git(config.root, "rev-list", "--count", f"{old}..{tip}")).stdout)
    how = "fast-forward" if await is_ancestor(config.root, old, tip) else "merge commit"
    tree = await git(
        config.root, "merge-tree", "--write-tree", "--name-only", old, tip, check=False
    )
    if tree.returncode == 1:
        files = _conflicted(tree.stdout)
        return MergeOutcome(
            "conflict",
            branch,
            base,
            f"{branch} would conflict with {base} in {git_names(files)}",
            files=tuple(files),
        )
    if not tree.ok:
        return MergeOutcome("error", branch, base, f"git merge-tree failed: {tree.stderr.strip()}")
    check = " ".join(_check_argv(config))
    then = f", then check {check!r} runs" if check else ""
    return MergeOutcome(
        "clean",
        branch,
        base,
        f"{plural(count, 'commit')} of {branch} would merge into {base} ({how}){then}{left_out}",
    )


def _conflicted(stdout: str) -> list[str]:
    # merge-tree --name-only: the tree id, the conflicted paths, a blank line, messages.
    lines = stdout.split("\n")[1:]
    files = []
    for line in lines:
        if not line:
            break
        files.append(line)
    return list(dict.fromkeys(files))


async def merge_branch(config: TownConfig, branch: str, label: str) -> MergeOutcome:
    """Merge ``branch`` into the base as described in the module docstring; ``label``
    names the agent in the merge commit's message. Returns the outcome; a conflict, a
    failing check or a base that moved too often leaves the base untouched. Raises
    GitError when git itself fails (the base is untouched then too). Cancellable."""
    base = await base_branch(config)
    for _attempt in range(ATTEMPTS):
        outcome = await _attempt_merge(config, base, branch, label)
        if outcome is not None:
            return outcome
    return MergeOutcome("error", branch, base, f"{base} kept moving during the merge; try again")


async def _attempt_merge(
    config: TownConfig, base: str, branch: str, label: str
) -> MergeOutcome | None:
    """One attempt; None when the base moved before it could land (try again)."""
    root = config.root
    scratch = root / SCRATCH
    try:
        async with town_lock(root):
            old, tip = (
                await rev(root, f"refs/heads/{base}"),
                await rev(root, f"refs/heads/{branch}"),
            )
            if old is None or tip is None:
                missing = base if old is None else branch
                return MergeOutcome("error", branch, base, f"branch {missing} does not exist")
            if await is_ancestor(root, tip, old):
                return MergeOutcome(
                    "up-to-date", branch, base, f"{branch} is already in {base}", old, old
                )
            await _remove_scratch(root)
            await git(root, "worktree", "add", "--detach", str(scratch), old)
            conflict = await _merge_in(scratch, old, tip, branch, base, label)
            if conflict is not None:
                return conflict
            new = await rev(scratch, "HEAD")
            assert new is not None
        failed = await _run_check(config, scratch, branch, base)
        if failed is not None:
            return failed
        async with town_lock(root):
            if await rev(root, f"refs/heads/{base}") != old:
                return None  # someone moved the base during the check: merge again
            blocked = await _root_blocks(root, base, old, new)
            if blocked is not None:
                return MergeOutcome("error", branch, base, blocked, old, old)
            await land(root, base, old, new)
        count = int((await git(root, "rev-list", "--count", f"{old}..{tip}")).stdout)
        text = f"merged {plural(count, 'commit')} of {branch} into {base}"
        if config.setting("workspace.push"):
            text += await _push(root, base)
        return MergeOutcome("merged", branch, base, text, old, new)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_DEADLINE):
            async with town_lock(root):
                await _remove_scratch(root)


async def _merge_in(
    scratch: Path, old: str, tip: str, branch: str, base: str, label: str
) -> MergeOutcome | None:
    """Merge ``tip`` into the scratch worktree (at ``old``); a conflict outcome or None."""
    if await is_ancestor(scratch, old, tip):
        await git(scratch, "merge", "-q", "--ff-only", tip)
        return None
    message = f"Merge {branch} ({label}) into {base}"
    merged = await git(
        scratch,
        "merge",
        "-q",
        "--no-ff",
        "--no-edit",
        "-m",
        message,
        tip,
        check=False,
        env=identity_env(),
    )
    if merged.ok:
        return None
    files = (await git(scratch, "diff", "--name-only", "--diff-filter=U")).lines()
    await git(scratch, "merge", "--abort", check=False)
    if not files:  # not a conflict: git itself failed
        reason = " ".join(merged.stderr.split())[:300] or "git merge failed"
        return MergeOutcome("error", branch, base, reason, old, old)
    return MergeOutcome(
        "conflict",
        branch,
        base,
        f"{branch} conflicts with {base} in {git_names(files)}",
        old,
        old,
        tuple(files),
    )


async def _run_check(
    config: TownConfig, scratch: Path, branch: str, base: str
) -> MergeOutcome | None:
    """Run ``[workspace] check`` in the scratch worktree; a check-failed outcome or None.
    Bounded by ``runtime.round_timeout`` (0: none). Cancellable (the check is killed)."""
    argv = _check_argv(config)
    if not argv:
        return None
    timeout = float(config.setting("runtime.round_timeout")) or None
    env = {**os.environ, "TT_MERGE_BRANCH": branch, "TT_MERGE_BASE": base}
    shown = " ".join(argv)
    with trio.move_on_after(timeout if timeout else float("inf")) as scope:
        try:
            done = await trio.run_process(
                argv,
                start_new_session=True,  # its own group: a cancel kills its children too
                deliver_cancel=_kill_group,
                cwd=scratch,
                env=env,
                stdin=b"",
                check=False,
                capture_stdout=True,
                capture_stderr=True,
            )
        except OSError as exc:
            return MergeOutcome(
                "check-failed",
                branch,
                base,
                f"check {shown!r} could not start: {exc.strerror or exc}",
            )
    if scope.cancelled_caught:
        return MergeOutcome("check-failed", branch, base, f"check {shown!r} timed out")
    if done.returncode == 0:
        return None
    output = (done.stdout + done.stderr).decode("utf-8", "replace")[-CHECK_TAIL:]
    last = next((ln for ln in reversed(output.splitlines()) if ln.strip()), "")
    text = f"check {shown!r} failed (exit {done.returncode}) on {branch} merged into {base}"
    return MergeOutcome(
        "check-failed", branch, base, f"{text}: {last[:200]}" if last else text, output=output
    )


async def _kill_group(process: trio.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


async def _root_blocks(root: Path, base: str, old: str, new: str) -> str | None:
    """Why the town root's checkout of ``base`` cannot follow the merge (uncommitted
    changes to files it changes), or None. Nothing to check when the base is not checked
    out at the root."""
    if not await _checked_out_at_root(root, base):
        return None
    changed = set((await git(root, "diff", "--name-only", old, new)).lines())
    touched = sorted(changed & set(await dirty_paths(root)))
    if touched:
        return (
            f"the town root has uncommitted changes to {git_names(touched)}, which the merge"
            f" changes; commit or stash them, then merge again ({base} is untouched)"
        )
    return None


async def _checked_out_at_root(root: Path, base: str) -> bool:
    head = await git(root, "symbolic-ref", "-q", "HEAD", check=False)
    return head.stdout.strip() == f"refs/heads/{base}"


async def land(root: Path, base: str, old: str, new: str) -> None:
    """Move ``base`` from ``old`` to ``new`` (compare-and-swap: refused if it moved) and
    bring the root's checkout along. The journal is written first so that a crash
    between the two steps is finished by :func:`recover`. Caller holds the town lock."""
    journal = root / JOURNAL
    follow = await _checked_out_at_root(root, base)
    if follow:
        journal.write_text(f"{base} {old} {new}\n")
    await git(root, "update-ref", "-m", f"tt merge into {base}", f"refs/heads/{base}", new, old)
    if follow:
        await _follow(root, old, new)
        journal.unlink(missing_ok=True)


async def _follow(root: Path, old: str, new: str) -> None:
    # Two-tree read-tree: what `git merge --ff-only` does to the index and files, keeping
    # local changes to other files.
    await git(root, "read-tree", "-m", "-u", old, new)


async def _push(root: Path, base: str) -> str:
    pushed = await git(root, "push", "--quiet", "origin", f"refs/heads/{base}", check=False)
    if pushed.ok:
        return f"; pushed {base} to origin"
    return f"; pushing {base} to origin failed: {' '.join(pushed.stderr.split())[:200]}"


async def _remove_scratch(root: Path) -> None:
    scratch = root / SCRATCH
    if scratch.exists():
        removed = await git(root, "worktree", "remove", "--force", str(scratch), check=False)
        if not removed.ok:
            shutil.rmtree(scratch, ignore_errors=True)
    await git(root, "worktree", "prune")


async def recover(config: TownConfig) -> list[str]:
    """After a crash: remove the scratch worktree and finish a landing whose base moved
    but whose root checkout did not follow. Returns what was done, for report lines.
    Cancellable (under the town lock)."""
    root = config.root
    done = []
    async with town_lock(root):
        journal = root / JOURNAL
        if journal.exists():
            base, old, new = journal.read_text().split()
            if await rev(root, f"refs/heads/{base}") == new and await _checked_out_at_root(
                root, base
            ):
                result = await git(root, "read-tree", "-m", "-u", old, new, check=False)
                done.append(
                    f"the root's checkout of {base} follows the merge that landed"
                    if result.ok
                    else f"the root's checkout of {base} lags its branch: {result.stderr.strip()}"
                )
            journal.unlink()
        if (root / SCRATCH).exists():
            await _remove_scratch(root)
            done.append(f"removed the scratch worktree {SCRATCH} of an interrupted merge")
    return done
