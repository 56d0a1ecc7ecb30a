"""Which town a ``tt`` command line is about: the rules shared by the command line
(:mod:`tinytown.cli`), the configuration (:mod:`tinytown.services.config`) and the
launcher (:mod:`tinytown.launcher`).

Standard library only, and only ``os``: the launcher runs these rules before anything
else is imported, on every ``tt`` command.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

CONFIG_FILE = "tinytown.toml"
#: Where a town keeps its private files (under its root).
STATE_DIR = ".tt"


def find_root(start: str, *, search: bool = True) -> str | None:
    """The directory holding ``tinytown.toml``: ``start`` itself or (``search``) its nearest
    ancestor that has one; None if there is none.

    An agent's git worktree (``.tt/worktrees/NAME``) may hold a committed copy of the file:
    when searching, it belongs to the town above it (docs/workspaces.md)."""
    here = os.path.realpath(start or ".")
    directory = here
    while True:
        parent = os.path.dirname(directory)
        in_worktree = (
            os.path.basename(parent) == "worktrees"
            and os.path.basename(os.path.dirname(parent)) == STATE_DIR
        )
        if os.path.isfile(os.path.join(directory, CONFIG_FILE)) and not (search and in_worktree):
            return directory
        if not search or parent == directory:
            return None
        directory = parent


def locate(town_dir: str | None, env: Mapping[str, str]) -> str | None:
    """The root of the town a command line names: ``-t DIR`` (or its nearest ancestor
    with a town), else the nearest ancestor of the current directory with one, else
    ``TT_TOWN_DIR`` from ``env`` (the runtime sets it for agents' CLIs); None if none."""
    if town_dir:
        return find_root(town_dir)
    found = find_root(".")
    if found is None and env.get("TT_TOWN_DIR"):
        return find_root(env["TT_TOWN_DIR"], search=False)
    return found


def command_word(argv: Sequence[str]) -> str | None:
    """The command's name in ``argv`` (the first word that is not the top parser's
    ``-t/--town DIR``), or None when an option of the top parser comes first."""
    words = iter(argv)
    for word in words:
        if word in ("-t", "--town"):
            next(words, None)
        elif word.startswith("--town=") or (word.startswith("-t") and word != "-t"):
            continue
        elif word.startswith("-"):
            return None  # --help, --version, -- ...: whole parser
        else:
            return word
    return None


def town_option(argv: Sequence[str]) -> str | None:
    """The ``-t/--town DIR`` given before the command's name in ``argv``, if any."""
    words = iter(argv)
    for word in words:
        if word in ("-t", "--town"):
            return next(words, None)
        if word.startswith("--town="):
            return word.partition("=")[2]
        if word.startswith("-t"):
            return word[2:]
        if not word.startswith("-"):
            return None
    return None
