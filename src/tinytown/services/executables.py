"""Is an agent's CLI installed? One check, with the rules the child's exec uses."""

from __future__ import annotations

import os
import shutil
import sysconfig
from collections.abc import Mapping

from tinytown.errors import CliNotFoundError


def agent_path(base: str | None = None) -> str:
    """The PATH agents' CLIs get: ``base`` (default: ours) with this Python's scripts
    directory in front, so the CLI can call ``tt`` back."""
    path = base if base is not None else os.environ.get("PATH", os.defpath)
    scripts = sysconfig.get_path("scripts")
    if scripts and scripts not in path.split(os.pathsep):
        path = scripts + os.pathsep + path
    return path


def executable_found(
    program: str, *, cwd: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> bool:
    """Whether exec would find ``program`` in a child run with ``cwd`` and ``env``.

    A name with a slash is a path, resolved against ``cwd`` as exec does after the child
    changes directory; a bare name is looked up on ``env``'s PATH (``os.defpath`` when
    it has none), the lookup subprocess itself does. Without ``env``: our own PATH.
    """
    if os.sep in program:
        path = os.path.join(cwd if cwd is not None else os.getcwd(), program)
        return os.path.isfile(path) and os.access(path, os.X_OK)
    search = os.get_exec_path(dict(env) if env is not None else None)
    return shutil.which(program, path=os.pathsep.join(search)) is not None


def check_cli_installed(
    argv: list[str],
    cli_name: str,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Raise CliNotFoundError unless ``argv[0]`` can be executed by a child run with
    ``cwd`` and ``env`` (see :func:`executable_found`)."""
    program = argv[0]
    if not executable_found(program, cwd=cwd, env=env):
        raise CliNotFoundError(
            f"CLI {cli_name!r} needs {program!r}, which is not installed or not on PATH."
        )
