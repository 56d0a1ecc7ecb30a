"""Keeping a town's ``.tt/`` directory out of the project's git repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

IGNORED_FORMS = frozenset({".tt", ".tt/", "/.tt", "/.tt/"})


def ignore_tt_dir(root: Path) -> None:
    """Add ``.tt/`` to the repository's .gitignore when the town is in a git work tree
    (and no form of it is listed yet)."""
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if inside.returncode != 0:
        return
    ignore = root / ".gitignore"
    lines = ignore.read_text(errors="replace").splitlines() if ignore.exists() else []
    if not IGNORED_FORMS & set(lines):
        with ignore.open("a") as fh:
            fh.write(("\n" if lines and lines[-1] else "") + ".tt/\n")
