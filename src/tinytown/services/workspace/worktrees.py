"""Workspaces: a git worktree per agent, what it holds, and saving work before deletion.

An agent spawned with ``--worktree`` (or in a town whose ``[workspace] mode`` is
``worktree``) works in ``.tt/worktrees/<name>`` on branch ``tt/<name>``, made from the
town's base branch. Nothing here deletes work: removing a worktree or branch that holds
uncommitted changes or commits the base lacks is refused unless forced, and forced, the
work is first saved under ``refs/tt/rescue/<name>/<timestamp>`` (docs/workspaces.md).

Every step that changes git state runs under the town's git lock (:func:`town_lock`).
Cancellation: every function is cancellable; a git command cancelled half-way is killed
and reaped, and each change is made so that a cancelled call leaves the work in place
(a rescue ref is written before anything is removed).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import attrs

from tinytown.errors import AlreadyExistsError, ConfigError, InvalidInputError, NotFoundError
from tinytown.model import Agent
from tinytown.services.config import TownConfig
from tinytown.services.workspace.git import (
    GitError,
    dirty_paths,
    git,
    repo_top,
    rev,
    town_lock,
)

WORKTREES = Path(".tt") / "worktrees"
BRANCH_PREFIX = "tt/"
RESCUE_PREFIX = "refs/tt/rescue/"
ZERO = "0" * 40
#: The allowed values of the workspace settings that take words.
CHOICES = {"workspace.mode": ("shared", "worktree"), "workspace.on_conflict": ("report", "task")}


class LostWorkError(InvalidInputError):
    """Removing a workspace would lose work (and ``force`` was not given)."""


def setting(config: TownConfig, key: str) -> str:
    """A word-valued workspace setting, checked (ConfigError in one sentence)."""
    value = str(config.setting(key))
    allowed = CHOICES[key]
    if value not in allowed:
        choices = " or ".join(repr(a) for a in allowed)
        raise ConfigError(f"{config.path}: config key {key!r} must be {choices}, not {value!r}.")
    return value


def wants_worktree(config: TownConfig, asked: bool | None) -> bool:
    """Whether a new agent gets a worktree: ``asked`` (``--worktree``), else the town's
    ``[workspace] mode``."""
    return asked if asked is not None else setting(config, "workspace.mode") == "worktree"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


async def base_branch(config: TownConfig) -> str:
    """The base branch: ``[workspace] base``, else the branch checked out at the root."""
    base = str(config.setting("workspace.base")).strip()
    if base:
        if await rev(config.root, f"refs/heads/{base}") is None:
            raise ConfigError(f"{config.path}: [workspace] base {base!r} is not a local branch.")
        return base
    current = await git(config.root, "symbolic-ref", "--short", "-q", "HEAD", check=False)
    if not current.ok or not current.stdout.strip():
        raise ConfigError(
            f"The town root {config.root} has no branch checked out (detached HEAD);"
            " set [workspace] base."
        )
    return current.stdout.strip()


async def check_repo(config: TownConfig) -> None:
    """Raise unless the town root is the top of a git work tree with a commit."""
    top = await repo_top(config.root)
    if top.resolve() != config.root.resolve():
        raise InvalidInputError(
            f"Worktrees need the town at the top of its git repository ({config.root}"
            f" is inside {top})."
        )
    if await rev(config.root, "HEAD") is None:
        raise InvalidInputError(f"The git repository at {config.root} has no commit yet.")


def path_of(config: TownConfig, agent: Agent) -> Path | None:
    """The agent's worktree directory, or None for an agent in the shared root."""
    return config.root / agent.worktree if agent.worktree else None


async def provide(config: TownConfig, name: str) -> tuple[str, str]:
    """Create (or take back) the worktree of agent ``name``: ``.tt/worktrees/<name>`` on
    branch ``tt/<name>``; returns (worktree relative to the root, branch).

    An existing branch ``tt/<name>`` (kept from an earlier agent of that name, or brought
    back by ``tt rescue restore``) is checked out as it is; otherwise the branch starts at
    the base. Raises NotARepositoryError outside git. Cancellable (under the town lock)."""
    await check_repo(config)
    rel, branch = WORKTREES / name, f"{BRANCH_PREFIX}{name}"
    path = config.root / rel
    async with town_lock(config.root):
        if await _registered(config.root, path):
            head = await git(path, "symbolic-ref", "--short", "-q", "HEAD", check=False)
            if head.stdout.strip() != branch:
                raise AlreadyExistsError(f"{rel} exists and is not on branch {branch}.")
            return str(rel), branch
        if path.exists():
            raise AlreadyExistsError(f"{rel} exists and is not a git worktree; move it away.")
        await git(config.root, "worktree", "prune")
        if await rev(config.root, f"refs/heads/{branch}") is not None:
            await git(config.root, "worktree", "add", str(path), branch)
        else:
            base = await base_branch(config)
            await git(config.root, "worktree", "add", "-b", branch, str(path), base)
    return str(rel), branch


async def _registered(root: Path, path: Path) -> bool:
    listing = await git(root, "worktree", "list", "--porcelain")
    wanted = str(path.resolve())
    return any(line == f"worktree {wanted}" for line in listing.stdout.splitlines())


def env_for(config: TownConfig, agent: Agent) -> dict[str, str]:
    """What an agent's CLI gets in its environment for its workspace."""
    path = path_of(config, agent)
    if path is None:
        return {}
    return {"TT_WORKTREE": str(path), "TT_BRANCH": agent.branch or ""}


# -- what a workspace holds -----------------------------------------------------------------


@attrs.frozen
class WorkState:
    """An agent's branch against the base: commits ahead, files not committed."""

    base: str
    ahead: int
    dirty: tuple[str, ...]
    missing: bool = False  # the worktree directory is gone (the branch may remain)

    def describe(self) -> str:
        if self.missing:
            return f"worktree missing, ahead {self.ahead}"
        return f"ahead {self.ahead}, dirty {plural(len(self.dirty), 'file')}"

    def lost(self) -> str | None:
        """What deleting this workspace would lose, or None."""
        parts = []
        if self.ahead:
            parts.append(f"{plural(self.ahead, 'commit')} not in {self.base}")
        if self.dirty:
            parts.append(f"{plural(len(self.dirty), 'uncommitted file')}")
        return " and ".join(parts) or None


async def state(config: TownConfig, agent: Agent) -> WorkState | None:
    """The agent's :class:`WorkState`, or None without a worktree. Three git calls: cheap
    enough for ``tt status``. Cancellable (reads only)."""
    path = path_of(config, agent)
    if path is None or not agent.branch:
        return None
    base = await base_branch(config)
    branch_tip = await rev(config.root, f"refs/heads/{agent.branch}")
    ahead = 0
    if branch_tip is not None:
        ahead = int((await git(config.root, "rev-list", "--count", f"{base}..{branch_tip}")).stdout)
    if not path.is_dir():
        return WorkState(base, ahead, (), missing=True)
    return WorkState(base, ahead, tuple(await dirty_paths(path)))


async def diff(config: TownConfig, agent: Agent, *, stat: bool = False) -> str:
    """The agent's work against the base: committed and uncommitted changes to tracked
    files since the branch left the base, then the untracked files. Cancellable."""
    path = path_of(config, agent)
    if path is None:
        raise InvalidInputError(f"Agent {agent.name} has no worktree (it works in the root).")
    if not path.is_dir():
        raise NotFoundError(f"The worktree of {agent.name} ({agent.worktree}) is missing.")
    base = await base_branch(config)
    fork = (await git(path, "merge-base", base, "HEAD")).stdout.strip()
    args = ["diff", "--stat"] if stat else ["diff"]
    text = (await git(path, *args, fork)).stdout
    untracked = (await git(path, "ls-files", "--others", "--exclude-standard")).lines()
    if untracked:
        text += f"{'' if not text or text.endswith(chr(10)) else chr(10)}untracked: "
        text += ", ".join(untracked) + "\n"
    return text


async def head(config: TownConfig, agent: Agent) -> str | None:
    """The commit checked out in the agent's worktree (None without one)."""
    path = path_of(config, agent)
    return await rev(path, "HEAD") if path is not None and path.is_dir() else None


async def commit_all(config: TownConfig, agent: Agent, message: str) -> str | None:
    """Commit every change in the agent's worktree on its branch (``[workspace]
    autocommit``); returns the new commit, or None when there was nothing to commit."""
    path = path_of(config, agent)
    if path is None or not path.is_dir() or not await dirty_paths(path):
        return None
    await git(path, "add", "-A")
    await git(path, "commit", "-q", "--no-verify", "-m", message, env=identity_env())
    return await rev(path, "HEAD")


def identity_env() -> dict[str, str]:
    """A committer identity for commits Tinytown makes itself, used only where git has
    none configured in the environment (git's own config still wins when it has one)."""
    env = {}
    for var, value in (
        ("GIT_AUTHOR_NAME", "Tinytown"),
        ("GIT_AUTHOR_EMAIL", "tinytown@localhost"),
        ("GIT_COMMITTER_NAME", "Tinytown"),
        ("GIT_COMMITTER_EMAIL", "tinytown@localhost"),
    ):
        if var not in os.environ:
            env[var] = value
    return env


# -- rescue: nothing is ever lost ----------------------------------------------------------


@attrs.frozen
class Rescue:
    """One saved piece of work: ``refs/tt/rescue/<name>/<stamp>``."""

    ref: str
    name: str
    stamp: str
    commit: str
    subject: str


def _stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")


async def _save(config: TownConfig, agent: Agent, work: WorkState) -> str:
    """Write the rescue ref of the agent's work (uncommitted changes as a commit on top of
    its branch, made with a private index: the worktree itself is untouched). The caller
    holds the town lock."""
    branch = agent.branch or f"{BRANCH_PREFIX}{agent.name}"
    commit = await rev(config.root, f"refs/heads/{branch}")
    path = path_of(config, agent)
    if work.dirty and path is not None:
        index = config.root / ".tt" / f"rescue-index-{os.getpid()}"
        env = {**identity_env(), "GIT_INDEX_FILE": str(index)}
        try:
            parent = await rev(path, "HEAD")
            await git(path, "read-tree", parent or "HEAD", env=env)
            await git(path, "add", "-A", env=env)
            tree = (await git(path, "write-tree", env=env)).stdout.strip()
            message = f"tt rescue: uncommitted changes of {agent.name}"
            made = await git(
                path, "commit-tree", tree, "-p", parent or "HEAD", "-m", message, env=env
            )
            commit = made.stdout.strip()
        finally:
            index.unlink(missing_ok=True)
    if commit is None:
        raise GitError(f"Nothing to save for {agent.name}: branch {branch} is gone.")
    ref = f"{RESCUE_PREFIX}{agent.name}/{_stamp()}"
    await git(config.root, "update-ref", "-m", f"tt rescue {agent.name}", ref, commit, ZERO)
    return ref


async def remove(config: TownConfig, agent: Agent, *, force: bool = False) -> str | None:
    """Delete the agent's worktree and branch. Refused (LostWorkError, one line naming the
    agent and what would be lost) when they hold work the base lacks, unless ``force``;
    forced, the work is saved to a rescue ref first, whose name is returned. Cancellable:
    the rescue ref is written before anything is deleted."""
    path = path_of(config, agent)
    if path is None:
        return None
    async with town_lock(config.root):
        await check_removable(config, agent, force=force)
        work = await state(config, agent)
        lost = work.lost() if work else None
        saved = await _save(config, agent, work) if lost and work else None
        if path.exists():
            result = await git(config.root, "worktree", "remove", "--force", str(path), check=False)
            if not result.ok:
                shutil.rmtree(path, ignore_errors=True)
        await git(config.root, "worktree", "prune")
        if agent.branch and await rev(config.root, f"refs/heads/{agent.branch}"):
            await git(config.root, "branch", "-D", agent.branch)
    return saved


async def lost_work(config: TownConfig, agent: Agent) -> str | None:
    """What removing the agent's workspace would lose (None: nothing)."""
    work = await state(config, agent)
    return work.lost() if work else None


async def rescues(config: TownConfig, name: str | None = None) -> list[Rescue]:
    """Saved work, oldest first (of agent ``name`` only, when given)."""
    where = f"{RESCUE_PREFIX}{name}/" if name else RESCUE_PREFIX
    fmt = "%(refname)%00%(objectname)%00%(subject)"
    listing = await git(config.root, "for-each-ref", f"--format={fmt}", where)
    out = []
    for line in listing.lines():
        ref, commit, subject = line.split("\0", 2)
        who, _, stamp = ref.removeprefix(RESCUE_PREFIX).rpartition("/")
        out.append(Rescue(ref, who, stamp, commit, subject))
    return sorted(out, key=lambda r: r.stamp)


async def find_rescue(config: TownConfig, ref: str) -> Rescue:
    """A rescue by its full ref, ``NAME/STAMP`` or ``NAME`` (its newest)."""
    found = await rescues(config)
    wanted = ref.removeprefix(RESCUE_PREFIX)
    exact = [r for r in found if r.ref.removeprefix(RESCUE_PREFIX) == wanted]
    named = [r for r in found if r.name == wanted]
    match = exact or named[-1:]
    if not match:
        raise NotFoundError(f"No rescued work named {ref!r} ('tt rescue list' shows them).")
    return match[0]


async def restore(config: TownConfig, ref: str, *, branch: str | None = None) -> tuple[str, str]:
    """Bring rescued work back as a branch (default ``tt/<name>``, which ``tt spawn NAME
    --worktree`` then checks out); returns (branch, commit). An existing branch is never
    overwritten. The rescue ref stays. Cancellable."""
    found = await find_rescue(config, ref)
    target = branch or f"{BRANCH_PREFIX}{found.name}"
    check = await git(config.root, "check-ref-format", "--branch", target, check=False)
    if not check.ok:
        raise InvalidInputError(f"{target!r} is not a valid branch name.")
    async with town_lock(config.root):
        if await rev(config.root, f"refs/heads/{target}") is not None:
            raise AlreadyExistsError(
                f"Branch {target} exists; restore with --branch NEW (nothing was changed)."
            )
        await git(config.root, "branch", target, found.commit)
    return target, found.commit


async def check_removable(config: TownConfig, agent: Agent, *, force: bool) -> None:
    """Raise LostWorkError (one line naming the agent and what would be lost) when the
    agent's workspace holds work the base lacks and ``force`` is not given."""
    if force or not agent.worktree:
        return
    lost = await lost_work(config, agent)
    if lost:
        raise LostWorkError(
            f"Agent {agent.name} has {lost} in {agent.worktree}; 'tt merge' them, or"
            f" --force saves them to {RESCUE_PREFIX}{agent.name}/... before removing."
        )
