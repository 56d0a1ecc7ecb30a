"""``tt towns --prune``: forget registered towns whose directory is gone (registered by
:mod:`tinytown.cli.commands.town`, which owns ``tt towns``)."""

from __future__ import annotations

from pathlib import Path

from tinytown.cli.context import Context
from tinytown.errors import ConfigError
from tinytown.services.registry import prune_towns, tt_home


def cmd_prune_towns(ctx: Context) -> int:
    """Remove the stale registry entries and say which (one line each)."""
    try:
        gone = prune_towns()
    except OSError as exc:
        where = tt_home() / "towns.toml"
        raise ConfigError(f"Cannot rewrite {where}: {exc.strerror or exc}.") from None
    if ctx.json:
        ctx.out.json({"removed": [{"path": p, "name": n} for p, n in gone.items()]})
        return 0
    if not gone:
        ctx.out.line("Nothing to prune: every registered town still exists.")
        return 0
    for path, name in gone.items():
        why = "no tinytown.toml" if Path(path).is_dir() else "directory gone"
        ctx.out.line(f"Removed {name} ({path}): {why}.")
    return 0
