"""Running ``git``: the real program, argv only (never a shell), output captured.

Also the town's git lock: worktree creation, merges and rescues are serialised per town
across processes (``tt`` commands and the runtime), which git's own index and ref locks
do not do (they fail a second writer instead of making it wait, and they cover one
step, not a sequence of steps).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import attrs
import trio

from tinytown.errors import TinytownError

#: How much of git's stderr an error message quotes.
ERROR_TAIL = 400


class GitError(TinytownError):
    """A git command failed (the message names the command and git's own words)."""

    def __init__(self, message: str, *, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


class NotARepositoryError(GitError):
    """The town root is not inside a git work tree."""


@attrs.frozen
class GitResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line]


def _clean_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    # Variables a hook or an outer git may have set would point git at another
    # repository or index: every call names its own directory instead.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX")
    }
    env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password on a terminal
    env.setdefault("LC_ALL", "C")  # messages we parse are the English ones
    if extra:
        env.update(extra)
    return env


async def git(
    cwd: Path,
    *args: str,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    stdin: bytes = b"",
) -> GitResult:
    """Run ``git -C cwd ARGS`` and return its exit code and output.

    With ``check`` a non-zero exit raises :class:`GitError` naming the command and
    quoting git's stderr. Cancellable: the process is killed and reaped (trio's
    ``run_process``); a cancelled git may leave its own ``.lock`` file only if killed
    mid-write, which git reports on the next call.
    """
    try:
        done = await trio.run_process(
            ["git", "-C", str(cwd), *args],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=_clean_env(env),
        )
    except FileNotFoundError:
        raise GitError("git is not installed (no 'git' program on PATH).") from None
    result = GitResult(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )
    if check and not result.ok:
        raise GitError(
            f"git {' '.join(args[:3])} failed in {cwd}: {_tail(result.stderr)}",
            stderr=result.stderr,
            returncode=result.returncode,
        )
    return result


def _tail(stderr: str) -> str:
    text = " ".join(stderr.strip().split())
    text = text.removeprefix("fatal: ").removeprefix("error: ")
    return (text[-ERROR_TAIL:] if text else "no message") + ("" if text.endswith(".") else ".")


async def repo_top(root: Path) -> Path:
    """The top of the git work tree holding ``root``; NotARepositoryError outside one."""
    result = await git(root, "rev-parse", "--show-toplevel", check=False)
    if not result.ok:
        raise NotARepositoryError(
            f"{root} is not in a git repository; worktrees need one ('git init' it first)."
        )
    return Path(result.stdout.strip())


async def rev(cwd: Path, ref: str) -> str | None:
    """The commit ``ref`` names, or None when it names none."""
    result = await git(cwd, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return result.stdout.strip() or None if result.ok else None


async def is_ancestor(cwd: Path, older: str, newer: str) -> bool:
    result = await git(cwd, "merge-base", "--is-ancestor", older, newer, check=False)
    return result.returncode == 0


async def count(cwd: Path, range_: str) -> int:
    """How many commits ``git rev-list RANGE`` lists."""
    return int((await git(cwd, "rev-list", "--count", range_)).stdout.strip() or 0)


def porcelain_paths(status: str) -> list[str]:
    """The paths of ``git status --porcelain -z`` output (renames: the new path)."""
    out: list[str] = []
    entries = status.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        out.append(entry[3:])
        if entry[0] in "RC":
            i += 1  # the rename's source path follows
    return out


async def dirty_paths(worktree: Path) -> list[str]:
    """Files with uncommitted changes in ``worktree`` (untracked ones included)."""
    status = await git(worktree, "status", "--porcelain", "-z", "--untracked-files=all")
    return porcelain_paths(status.stdout)


# -- the town's git lock ------------------------------------------------------------------


@contextlib.asynccontextmanager
async def town_lock(root: Path) -> AsyncIterator[None]:
    """Hold the town's git lock (``.tt/git.lock``) for a sequence of git steps.

    An ``flock`` on a file: the kernel drops it when its holder dies (a ``kill -9`` of
    the runtime never leaves the town locked), and every ``tt`` process of the town and
    the runtime share it. Waiting blocks (no polling) and is cancellable: the waiting
    thread is abandoned and lets the lock go as soon as it gets it.
    """
    path = root / ".tt" / "git.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    guard = threading.Lock()
    state = {"abandoned": False, "taken": False}

    def release() -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def acquire() -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with guard:
            if state["abandoned"]:  # our waiter was cancelled: give the lock up at once
                release()
            else:
                state["taken"] = True

    try:
        await trio.to_thread.run_sync(acquire, abandon_on_cancel=True)
    except BaseException:
        with guard:
            state["abandoned"] = True
            if state["taken"]:  # the thread got it just as we were cancelled
                release()
        raise
    try:
        yield
    finally:
        release()


def git_names(paths: Sequence[str], limit: int = 5) -> str:
    """``a, b, c and 2 more`` for messages."""
    shown = ", ".join(paths[:limit])
    more = len(paths) - limit
    return f"{shown} and {more} more" if more > 0 else shown
