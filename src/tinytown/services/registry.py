"""The per-user town registry (``~/.tt/towns.toml``, or ``$TT_HOME``) behind ``tt towns``."""

from __future__ import annotations

import os
import tomllib
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
    home = tt_home()
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        towns = registered_towns()
        towns[str(root)] = name
        body = {"towns": [{"path": p, "name": n} for p, n in sorted(towns.items())]}
        tmp = home / "towns.toml.tmp"
        try:
            tmp.write_text(tomli_w.dumps(body), encoding="utf-8")
            tmp.replace(home / "towns.toml")
        finally:
            tmp.unlink(missing_ok=True)  # never left behind, whatever failed
    except (OSError, UnicodeError):
        pass  # the registry is a convenience; a read-only home must not break init


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
