"""Plan commands: ``plan``, ``sync push|pull``, ``save``, ``restore``, ``migrate``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tinytown.cli.context import Context, UsageError, connect_town
from tinytown.cli.output import add_json_flag, clip, plural, record, short
from tinytown.errors import (
    NotInitializedError,
    RedisServerNotFoundError,
    RedisUnavailableError,
)
from tinytown.services.town import Town

#: Old keys listed in the deletion hint before it points to ``--json`` instead.
HINT_KEYS = 12


def register(sub: Any) -> None:
    p = sub.add_parser(
        "plan",
        help="show the plan file (tasks.toml) and its tasks' state; --init writes a template",
        description=(
            "List the [[tasks]] of tasks.toml with the state of their Redis task when the"
            " plan has been pushed. --init writes a commented template."
        ),
    )
    p.add_argument("--init", action="store_true", help="write a template tasks.toml")
    p.add_argument("--force", action="store_true", help="with --init: replace an existing file")
    add_file_option(p)
    add_json_flag(p)
    p.set_defaults(handler=cmd_plan, town="none")

    p = sub.add_parser(
        "sync",
        help="push tasks.toml into Redis, or pull the tasks' state back into it",
        description=(
            "push: create or update one task per plan id (idempotent), link parents, assign"
            " tasks that name an agent and put the others in the backlog; nothing is applied"
            " if the file has an error. pull: write each task's status and agent back."
        ),
    )
    p.add_argument("direction", choices=("push", "pull"), help="push or pull")
    add_file_option(p)
    p.add_argument(
        "--all", action="store_true", help="pull: also add tasks created outside the plan"
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_sync, town="required")

    p = sub.add_parser(
        "save",
        help="compact the AOF and write a JSON snapshot of the town",
        description=(
            "Trigger BGREWRITEAOF on the town's Redis and export every key of the town to a"
            " portable JSON snapshot (default .tt/snapshot.json)."
        ),
    )
    p.add_argument("--output", type=Path, metavar="PATH", help="where to write the snapshot")
    add_json_flag(p)
    p.set_defaults(handler=cmd_save, town="required")

    p = sub.add_parser(
        "restore",
        help="load a JSON snapshot (from 'tt save') into this town",
        description=(
            "Load a snapshot into this town, which may be another town than the one saved."
            " Refused while the town runs, and if it has agents or tasks unless --force."
        ),
    )
    p.add_argument("--input", type=Path, metavar="PATH", help="snapshot to load")
    p.add_argument("--force", action="store_true", help="replace the town's current state")
    add_json_flag(p)
    p.set_defaults(handler=cmd_restore, town="required")

    p = sub.add_parser(
        "migrate",
        help="move Rust Tinytown records into this town (old global keys; --hash: 0.10 hashes)",
        description=(
            "Move agents, tasks, inboxes and the backlog of the old layout without towns"
            " (tt:<type>:<id>) into this town's keys and format: each record is written and"
            " its old key removed in one atomic step (--keep-old keeps the old keys). With"
            " --hash, convert this town's Rust 0.10 records (agents and tasks stored as"
            " Redis hashes) into JSON records in place. Existing records are never"
            " overwritten; --dry-run lists what would be done."
        ),
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be done")
    p.add_argument(
        "--hash",
        action="store_true",
        help="convert this town's Rust 0.10 hash-format agents and tasks to JSON records",
    )
    p.add_argument(
        "--keep-old", action="store_true", help="copy the old global keys instead of moving them"
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_migrate, town="required")


def add_file_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", metavar="PATH", help="the plan file (default: tasks.toml in the town)")


def plan_file(ctx: Context, args: argparse.Namespace) -> Path:
    from tinytown.services import plans

    if args.file:
        return Path(args.file)
    try:
        root: Path | None = ctx.root()
    except NotInitializedError:
        root = None
    return plans.default_path(root)


async def cmd_plan(ctx: Context, args: argparse.Namespace) -> int:
    from tinytown.services import plans

    path = plan_file(ctx, args)
    if args.init:
        plans.write_template(path, force=args.force)
        if ctx.json:
            ctx.out.json({"created": str(path)})
        else:
            ctx.out.line(f"Wrote {plans.shown_path(path)}; edit it, then run 'tt sync push'.")
        return 0
    plan = plans.load_plan(path)
    town, opened = await _town_if_any(ctx)
    try:
        tasks = await plans.plan_tasks(town, plan) if town else [None] * len(plan.entries)
        names = await ctx.names() if town else {}
    finally:
        if opened is not None:
            await opened.aclose()
            ctx.town = None
    if ctx.json:
        ctx.out.json(
            [
                {
                    "id": e.id,
                    "description": e.description,
                    "agent": e.agent,
                    "status": e.status.value if e.status else None,
                    "tags": list(e.tags),
                    "parent": e.parent,
                    "line": e.line,
                    "task": record(t) if t else None,
                }
                for e, t in zip(plan.entries, tasks, strict=True)
            ]
        )
        return 0
    rows = [
        [
            e.id,
            t.state.value if t else ("not pushed" if town else "-"),
            (names.get(t.assigned_to, short(t.assigned_to)) if t and t.assigned_to else e.agent),
            e.parent,
            short(t.id) if t else None,
            clip(e.description, 50),
        ]
        for e, t in zip(plan.entries, tasks, strict=True)
    ]
    ctx.out.line(f"{plans.shown_path(path)}: {plural(len(rows), 'task')}")
    if rows:
        ctx.out.table(rows, ["ID", "STATE", "AGENT", "PARENT", "TASK", "DESCRIPTION"])
    return 0


async def _town_if_any(ctx: Context) -> tuple[Town | None, Town | None]:
    """(town to read, town we opened and must close); no town or no Redis is fine."""
    if ctx.town is not None:
        return ctx.town, None
    try:
        ctx.town = await connect_town(ctx.town_dir)
    except (NotInitializedError, RedisUnavailableError, RedisServerNotFoundError):
        return None, None  # the file can still be listed
    return ctx.town, ctx.town


async def cmd_sync(ctx: Context, args: argparse.Namespace) -> int:
    from tinytown.services import plans

    town = ctx.need_town()
    path = plan_file(ctx, args)
    shown = plans.shown_path(path)
    if args.direction == "push":
        if args.all:
            raise UsageError("--all only applies to 'tt sync pull'.")
        report = await plans.push(town, path, sender=ctx.sender)
        counts = report.counts()
        if ctx.json:
            lists = {name: getattr(report, name) for name in counts}
            ctx.out.json(
                {"counts": counts, **lists, "task_ids": report.task_ids, "notes": report.notes}
            )
            return 0
        ctx.out.line(f"Pushed {shown}: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + ".")
        for note in report.notes:
            ctx.out.warn(note)
        return 0
    pulled = await plans.pull(town, path, include_all=args.all)
    if ctx.json:
        ctx.out.json(
            {
                "file": str(path),
                "written": pulled.written,
                "updated": pulled.updated,
                "added": pulled.added,
                "unchanged": pulled.unchanged,
                "not_pushed": pulled.not_pushed,
            }
        )
        return 0
    ctx.out.line(
        f"Pulled into {shown}: {len(pulled.updated)} updated, {len(pulled.added)} added,"
        f" {len(pulled.unchanged)} unchanged" + ("." if pulled.written else " (file unchanged).")
    )
    if pulled.not_pushed:
        ctx.out.line(f"Not pushed yet: {', '.join(pulled.not_pushed)}.")
    return 0


async def cmd_save(ctx: Context, args: argparse.Namespace) -> int:
    from tinytown.services import persistence

    town = ctx.need_town()
    report = await persistence.save(town, args.output)
    if ctx.json:
        ctx.out.json(
            {
                "snapshot": str(report.snapshot),
                "keys": report.keys,
                "aof": str(report.aof) if report.aof else None,
                "aof_note": report.aof_note,
            }
        )
        return 0
    snapshot, aof = _rel(report.snapshot, town.root), _rel(report.aof, town.root)
    ctx.out.line(f"Saved {plural(report.keys, 'key')} of town {town.name} to {snapshot}.")
    ctx.out.line(f"AOF: {aof or 'location unknown'} ({report.aof_note}).")
    return 0


def _rel(path: Path | None, root: Path) -> str | None:
    """``path`` relative to the town root when inside it (``.tt/snapshot.json``)."""
    if path is None:
        return None
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


async def cmd_restore(ctx: Context, args: argparse.Namespace) -> int:
    from tinytown.services import persistence

    town = ctx.need_town()
    report = await persistence.restore(town, args.input, force=args.force)
    if ctx.json:
        ctx.out.json(
            {"keys": report.keys, "source_town": report.source_town, "replaced": report.replaced}
        )
        return 0
    source = args.input or persistence.snapshot_path(town)
    replaced = f", replacing {plural(report.replaced, 'key')}" if report.replaced else ""
    ctx.out.line(
        f"Restored {plural(report.keys, 'key')} of town {report.source_town} into town"
        f" {town.name} from {source}{replaced}."
    )
    return 0


async def cmd_migrate(ctx: Context, args: argparse.Namespace) -> int:
    from tinytown.services import migrate as migration

    town = ctx.need_town()
    if args.hash and args.keep_old:
        raise UsageError("--keep-old applies to the old global keys, not to --hash.")
    if args.hash:
        report = await migration.migrate_hashes(town, dry_run=args.dry_run)
    else:
        report = await migration.migrate(town, dry_run=args.dry_run, keep_old=args.keep_old)
    left = 0 if args.hash else await migration.legacy_count(town)
    if ctx.json:
        ctx.out.json(
            {
                "dry_run": report.dry_run,
                "hash": args.hash,
                "migrated": [{"old": o, "new": n} for o, n in report.migrated],
                "skipped": [{"old": o, "reason": r} for o, r in report.skipped],
                "malformed": [{"old": o, "reason": r} for o, r in report.malformed],
                "old_keys": report.old_keys,
                "removed": report.removed,
                "kept": report.kept,
                "hash_records": left,
            }
        )
        return 0
    verb = (
        ("would convert" if report.dry_run else "converted")
        if args.hash
        else ("would migrate" if report.dry_run else "migrated")
    )
    for old, new in report.migrated:
        ctx.out.line(f"{verb} {old}" if old == new else f"{verb} {old} -> {new}")
    for old, reason in report.skipped:
        ctx.out.line(f"skipped {old}: {reason}")
    for old, reason in report.malformed:
        ctx.out.warn(f"malformed {old}: {reason}; skipped")
    ctx.out.line(
        f"{'Dry run: ' if report.dry_run else ''}{len(report.migrated)} {verb},"
        f" {len(report.skipped)} skipped, {len(report.malformed)} malformed."
    )
    if report.removed:
        ctx.out.line(f"Removed {plural(len(report.removed), 'old key')}.")
    if report.kept:
        keys = report.kept
        listed = " ".join(keys[:HINT_KEYS]) + (" ..." if len(keys) > HINT_KEYS else "")
        why = "(--keep-old)" if args.keep_old else "(they hold entries that could not move)"
        ctx.out.line(f"Kept {plural(len(keys), 'old key')} {why}: {listed}")
    if left:
        ctx.out.line(
            f"This town also has {plural(left, 'record')} in Rust 0.10's hash format:"
            " convert them with 'tt migrate --hash' (--dry-run first to list them)."
        )
    return 0
