"""Is an agent's CLI installed? One check, with the rules the child's exec uses.

What does not change while the process lives is looked up once: this interpreter's
scripts directory, and (only where the caller asks, i.e. ``tt spawn``) a *positive*
``which`` answer per (search path, name). A CLI removed later is still caught where it
matters: the actor checks without the cache when it starts, and every round checks
again before its exec (runtime/process.py), so a missing CLI fails that round clearly.
"""

from __future__ import annotations

import functools
import os
import shutil
import sysconfig
from collections.abc import Mapping

from tinytown.errors import CliNotFoundError

#: (search path, program) pairs ``which`` found, for callers that pass ``remember=True``.
_FOUND: set[tuple[str, str]] = set()


@functools.cache
def _scripts_dir() -> str:
    # sysconfig rebuilds the interpreter's config variables on every get_path call
    # (17 % of a spawn); the answer cannot change while this process runs.
    return sysconfig.get_path("scripts")


def agent_path(base: str | None = None) -> str:
    """The PATH agents' CLIs get: ``base`` (default: ours) with this Python's scripts
    directory in front, so the CLI can call ``tt`` back."""
    path = base if base is not None else os.environ.get("PATH", os.defpath)
    scripts = _scripts_dir()
    if scripts and scripts not in path.split(os.pathsep):
        path = scripts + os.pathsep + path
    return path


def executable_found(
    program: str,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    remember: bool = False,
) -> bool:
    """Whether exec would find ``program`` in a child run with ``cwd`` and ``env``.

    A name with a slash is a path, resolved against ``cwd`` as exec does after the child
    changes directory; a bare name is looked up on ``env``'s PATH (``os.defpath`` when
    it has none), the lookup subprocess itself does. Without ``env``: our own PATH.
    With ``remember``, a bare name found once on the same search path is taken as still
    there (never a miss: a CLI installed meanwhile is found at the next call).
    """
    if os.sep in program:
        path = os.path.join(cwd if cwd is not None else os.getcwd(), program)
        return os.path.isfile(path) and os.access(path, os.X_OK)
    search = os.pathsep.join(os.get_exec_path(dict(env) if env is not None else None))
    if remember and (search, program) in _FOUND:
        return True
    found = shutil.which(program, path=search) is not None
    if found and remember:
        _FOUND.add((search, program))
    return found


def check_cli_installed(
    argv: list[str],
    cli_name: str,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    remember: bool = False,
) -> None:
    """Raise CliNotFoundError unless ``argv[0]`` can be executed by a child run with
    ``cwd`` and ``env`` (see :func:`executable_found`, also for ``remember``)."""
    program = argv[0]
    if not executable_found(program, cwd=cwd, env=env, remember=remember):
        raise CliNotFoundError(
            f"CLI {cli_name!r} needs {program!r}, which is not installed or not on PATH."
        )
