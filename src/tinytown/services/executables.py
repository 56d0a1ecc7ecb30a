"""Is an agent's CLI installed? One check, with the rules the child's exec uses.

What does not change while the process lives is looked up once: this interpreter's
scripts directory. Where ``which`` found a bare name, the path it found is kept per
(search path, name): the next check only asks whether that file is still an executable
(exec then finds it, or one earlier on the path) and walks the path again when it is
not. So every round still checks before its exec (runtime/process.py) and a CLI removed
meanwhile fails that round clearly, for two system calls instead of a walk of the whole
PATH. Only ``tt spawn`` (``remember``) takes an earlier positive answer as it is.
"""

from __future__ import annotations

import functools
import os
import shutil
import sysconfig
from collections.abc import Mapping

from tinytown.errors import CliNotFoundError

#: (search path, program) -> the absolute path ``which`` found it at.
_FOUND: dict[tuple[str, str], str] = {}


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
    A bare name found before on the same search path is checked at the path it was
    found at (still an executable file: found); with ``remember`` it is taken as still
    there without that check. Never a cached miss: a CLI installed meanwhile is found at
    the next call.
    """
    if os.sep in program:
        path = os.path.join(cwd if cwd is not None else os.getcwd(), program)
        return _is_executable_file(path)
    key = (os.pathsep.join(os.get_exec_path(dict(env) if env is not None else None)), program)
    known = _FOUND.get(key)
    if known is not None and (remember or _is_executable_file(known)):
        return True
    found = shutil.which(program, path=key[0])
    if found is None:
        _FOUND.pop(key, None)
        return False
    if os.path.isabs(found):  # a relative PATH entry depends on the cwd: not kept
        _FOUND[key] = found
    return True


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


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
