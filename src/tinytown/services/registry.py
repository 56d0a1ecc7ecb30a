"""The per-user town registry (``~/.tt/towns.toml``, or ``$TT_HOME``) behind ``tt towns``."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

import tomli_w


def tt_home() -> Path:
    """Per-user Tinytown directory (``TT_HOME`` or ``~/.tt``): the town registry lives here."""
    return Path(os.environ.get("TT_HOME") or Path.home() / ".tt")


def default_town_name(root: Path) -> str:
    """The directory name, made into a legal town name."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in root.name).strip("-._")
    return cleaned[:64] or "town"


def register_town(root: Path, name: str) -> None:
    """Remember the town in ``~/.tt/towns.toml`` for ``tt towns``."""
    try:
        with _locked() as home:
            towns = registered_towns()
            towns[str(root)] = name
            _write(home, towns)
    except (OSError, UnicodeError):
        pass  # the registry is a convenience; a read-only home must not break init


def prune_towns(*, dry_run: bool = False) -> dict[str, str]:
    """Forget the registered towns whose directory or ``tinytown.toml`` no longer exists;
    returns them (path -> name). Raises OSError when the registry cannot be rewritten."""
    with _locked() as home:
        towns = registered_towns()
        gone = {p: n for p, n in towns.items() if not (Path(p) / "tinytown.toml").is_file()}
        if gone and not dry_run:
            _write(home, {p: n for p, n in towns.items() if p not in gone})
    return gone


@contextlib.contextmanager
def _locked() -> Iterator[Path]:
    """The registry's directory, with its lock held (no two writers lose an entry)."""
    home = tt_home()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (home / "towns.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield home


def _write(home: Path, towns: dict[str, str]) -> None:
    body = {"towns": [{"path": p, "name": n} for p, n in sorted(towns.items())]}
    tmp = home / "towns.toml.tmp"
    try:
        tmp.write_text(tomli_w.dumps(body), encoding="utf-8")
        tmp.replace(home / "towns.toml")
    finally:
        tmp.unlink(missing_ok=True)  # never left behind, whatever failed


def registered_towns() -> dict[str, str]:
    try:
        data = tomllib.loads((tt_home() / "towns.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeError, tomllib.TOMLDecodeError):
        return {}
    return {
        str(t.get("path")): str(t.get("name"))
        for t in data.get("towns", [])
        if isinstance(t, dict) and t.get("path")
    }
