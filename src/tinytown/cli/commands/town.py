"""Town commands: ``init``, ``down``, ``status``, ``towns``, ``config``, ``reset``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import trio

from tinytown.cli.commands.runtime import add_stop_options, stop_town
from tinytown.cli.context import Context
from tinytown.cli.output import add_json_flag, plural
from tinytown.cli.status import cmd_status
from tinytown.errors import InvalidInputError, RuntimeBusyError, TinytownError
from tinytown.services import control
from tinytown.services.config import CONFIG_FILE, DEFAULTS, TownConfig
from tinytown.services.endpoint import embedded_server, redis_url
from tinytown.services.town import Town, TownStoppedError
from tinytown.store import admin


def register(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="create a town in the current (or -t) directory",
        description=(
            "Create tinytown.toml and .tt/ here, start the town's embedded Redis (unless\n"
            "REDIS_URL names an external one) and register the town for 'tt towns'.\n"
            "Running it in an existing town just connects to it."
        ),
    )
    p.add_argument("--name", "-n", help="town name (default: the directory name)")
    p.set_defaults(handler=cmd_init, town="none")

    p = sub.add_parser(
        "down",
        help="stop the town (as 'tt stop'), then its embedded Redis server",
        description=(
            "Stop the town's runtime if one runs (as 'tt stop': rounds in progress get\n"
            "runtime.shutdown_grace seconds, --now cancels them), then the embedded\n"
            "redis-server. Its data is kept in .tt/; the next command that writes starts it\n"
            "again. With an external Redis only the runtime is stopped."
        ),
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="clear an unreadable or stale runtime lease first (not a live local runtime's)",
    )
    add_stop_options(p)
    p.set_defaults(handler=cmd_down, town="none")

    p = sub.add_parser(
        "status",
        help="show the town, its runtime, agents and task counts",
        description="Show the town, whether it runs, its agents and its task counts.",
    )
    p.add_argument(
        "--deep",
        action="store_true",
        help="per agent: rounds, uptime, heartbeat, inbox and in-flight counts, last log lines",
    )
    p.add_argument("--tasks", action="store_true", help="tasks by state and by agent")
    add_json_flag(p)
    # Opens the town itself: a stopped town is a report (exit 0), not an error.
    p.set_defaults(handler=cmd_town_status, town="none", readonly=True)

    p = sub.add_parser(
        "towns",
        help="list registered towns and whether their Redis is reachable",
        description="List the towns created with 'tt init' on this machine (from ~/.tt or"
        " TT_HOME).\nNo Redis server is started to check them. --prune forgets the towns"
        " whose directory\nor tinytown.toml no longer exists (their Redis data is not touched).",
    )
    p.add_argument(
        "--prune", action="store_true", help="forget towns whose directory is gone; say which"
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_towns, town="none")

    p = sub.add_parser(
        "config",
        help="show or change tinytown.toml settings",
        description=(
            "No KEY: print every effective setting as 'key = value' (defaults included).\n"
            "KEY: print its value. KEY VALUE: set it (checked against the setting's type).\n"
            "CLI presets are 'agent_clis.NAME' (value: the command line)."
        ),
    )
    p.add_argument("key", nargs="?", metavar="KEY", help="setting, e.g. default_cli")
    p.add_argument("value", nargs="?", metavar="VALUE", help="new value")
    add_json_flag(p)
    p.set_defaults(handler=cmd_config, town="none")

    p = sub.add_parser(
        "reset",
        help="delete the town's Redis data (needs --force)",
        description=(
            "Delete every Redis key of this town (tasks, agents, inboxes, events...).\n"
            "Without --force it only shows what would be deleted. Refused while 'tt run'\n"
            "holds the town. tinytown.toml and .tt/ are kept."
        ),
    )
    p.add_argument("--force", action="store_true", help="really delete")
    p.add_argument(
        "--agents-only",
        action="store_true",
        help="delete only agent records, their inboxes and in-flight lists, and the agent index",
    )
    p.set_defaults(handler=cmd_reset, town="required")


# -- init / down ---------------------------------------------------------------------------


async def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    root = Path(ctx.town_dir or ".").resolve()
    existed = (root / CONFIG_FILE).exists()
    async with await Town.init(root, args.name) as town:
        what = "already exists" if existed else "created"
        ctx.out.line(f"Town {town.name} {what} at {town.root}.")
        kind = "external" if redis_url(town.config) else "embedded"
        ctx.out.line(f"Redis: {town.store.describe()} ({kind}).")
        ctx.out.line("Next: tt spawn worker-1 --cli claude, then tt run.")
    return 0


async def cmd_down(ctx: Context, args: argparse.Namespace) -> int:
    config = TownConfig.load(ctx.root())
    external = redis_url(config)
    server = embedded_server(config)
    if not external and not await trio.to_thread.run_sync(server.is_running):
        ctx.out.line(f"Town {config.name} is not running and its Redis is stopped.")
        return 0
    async with await Town.connect(config.root, search=False, start_server=False) as town:
        holder = await control.runtime_holder(town.store)
        if holder and args.force:
            from tinytown.runtime.lease import force_clear

            holder = await force_clear(town.store, ctx.out.line)
        if holder and holder.corrupt:
            raise RuntimeBusyError(
                f"Town {config.name} has {holder.describe()}; nothing was stopped."
            )
        if holder:
            await stop_town(ctx, town, now=args.now, timeout=args.timeout)
    if external:
        if not holder:
            ctx.out.line(f"Town {config.name} is not running.")
        ctx.out.line(f"Town {config.name} uses an external Redis; it keeps running.")
        return 0
    await trio.to_thread.run_sync(server.stop)
    ctx.out.line(f"Stopped Redis of town {config.name} (data kept in {server.tt_dir}).")
    return 0


# -- status ----------------------------------------------------------------------------------


async def cmd_town_status(ctx: Context, args: argparse.Namespace) -> int:
    """``tt status``: the town as it is; a town whose embedded Redis is stopped (after ``tt
    down``) is reported stopped without starting it."""
    if ctx.town is not None:  # the REPL's own town
        return await cmd_status(ctx, args)
    try:
        ctx.town = await ctx.connect(args)
    except TownStoppedError as exc:
        root = ctx.root()
        if ctx.json:
            ctx.out.json(
                {
                    "town": exc.town,
                    "root": str(root),
                    "stopped": True,
                    "runtime": None,
                    "redis_kind": "embedded",
                    "redis": "stopped",
                }
            )
        else:
            ctx.out.line(
                f"Town {exc.town} at {root}: stopped (its Redis is not running; data kept"
                " in .tt/). Commands that change the town start it; 'tt run' runs it."
            )
        return 0
    async with ctx.town:
        return await cmd_status(ctx, args)


# -- towns -----------------------------------------------------------------------------------


async def _probe(path: str) -> dict[str, Any]:
    """Reachability of one registered town, without starting any server."""
    info: dict[str, Any] = {"path": path, "reachable": False, "agents": None, "problem": None}
    try:
        with trio.fail_after(3):
            async with await Town.connect(path, search=False, start_server=False) as town:
                info["name"] = town.name
                info["agents"] = len(await town.agents.list())
                info["reachable"] = True
    except trio.TooSlowError:
        info["problem"] = "Redis did not answer"
    except TinytownError as exc:
        info["problem"] = str(exc)
    return info


async def cmd_towns(ctx: Context, args: argparse.Namespace) -> int:
    from tinytown.cli.commands import towns_prune as prune_cmd
    from tinytown.services.registry import registered_towns

    if args.prune:
        return prune_cmd.cmd_prune_towns(ctx)
    towns = registered_towns()
    found = []
    for path, name in towns.items():
        info = await _probe(path)
        info.setdefault("name", name)
        found.append(info)
    if ctx.json:
        ctx.out.json(found)
        return 0
    if not found:
        ctx.out.line("No towns registered. Run 'tt init' in a project directory.")
        return 0
    rows = [
        [
            t["name"],
            "reachable" if t["reachable"] else "unreachable",
            t["agents"] if t["reachable"] else None,
            t["path"],
        ]
        for t in found
    ]
    ctx.out.table(rows, ["NAME", "REDIS", "AGENTS", "PATH"])
    return 0


# -- config ----------------------------------------------------------------------------------


def effective_config(config: TownConfig) -> dict[str, Any]:
    """Every setting with its effective value, and every CLI preset."""
    out: dict[str, Any] = {"name": config.name}
    out.update({key: config.get(key) for key in DEFAULTS})
    out.update({f"agent_clis.{name}": cmd for name, cmd in sorted(config.clis().items())})
    return out


def _config_value(config: TownConfig, key: str) -> Any:
    if key.startswith("agent_clis."):
        name = key.split(".")[1]
        clis = config.clis()
        if name not in clis:
            raise InvalidInputError(f"No CLI preset named {name!r}; known: {', '.join(clis)}.")
        return clis[name]
    return config.get(key)


async def cmd_config(ctx: Context, args: argparse.Namespace) -> int:
    # Unchecked, so a bad value written by hand can be shown and corrected here.
    config = TownConfig.load(ctx.root(), check=False)
    if args.key is None:
        values = effective_config(config)
        if ctx.json:
            ctx.out.json(values)
        else:
            for key, value in values.items():
                ctx.out.line(f"{key} = {value}")
        return 0
    if args.value is None:
        value = _config_value(config, args.key)
        ctx.out.json({args.key: value}) if ctx.json else ctx.out.line(str(value))
        return 0
    stored = config.set(args.key, args.value)
    ctx.out.line(f"{args.key} = {stored}")
    return 0


# -- reset -----------------------------------------------------------------------------------


async def _reset_keys(town: Town, agents_only: bool) -> list[str]:
    if not agents_only:
        return await admin.scan(town.store, town.keys.pattern)
    keys: list[str] = []
    for part in ("agent", "inbox", "inflight"):
        keys += await admin.scan(town.store, f"{town.keys.prefix}{part}:*")
    if await admin.exists(town.store, town.keys.agents):
        keys.append(town.keys.agents)
    return keys


_KEY_KINDS = {"agents": "agent index", "tasks": "task index", "events": "event stream"}


def _describe_keys(town: Town, keys: list[str]) -> str:
    counts: dict[str, int] = {}
    for key in keys:
        kind = key[len(town.keys.prefix) :].split(":", 1)[0]
        kind = _KEY_KINDS.get(kind, kind)
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


async def cmd_reset(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    scope = "agent data" if args.agents_only else "Redis data"
    if not args.force:
        keys = await _reset_keys(town, args.agents_only)
        if keys:
            ctx.out.line(
                f"Would delete {plural(len(keys), 'key')} of town {town.name}"
                f" ({_describe_keys(town, keys)})."
            )
        else:
            ctx.out.line(f"Town {town.name} has no {scope} to delete.")
        raise InvalidInputError("Refusing to reset without --force.")
    holder = await control.runtime_holder(town.store)
    if holder:
        raise RuntimeBusyError(
            f"Town {town.name} is running ({holder.describe()}); stop 'tt run' before a reset."
        )
    keys = await _reset_keys(town, args.agents_only)
    await admin.unlink(town.store, keys)
    ctx.out.line(f"Deleted {plural(len(keys), 'key')} of town {town.name} ({scope}).")
    return 0
