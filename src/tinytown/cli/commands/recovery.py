"""Recovery commands: ``recover`` and ``reclaim`` (they never destroy work)."""

from __future__ import annotations

import argparse
from typing import Any

from tinytown.cli.context import Context
from tinytown.cli.output import add_json_flag, clip, duration, plural, record, short
from tinytown.services.recovery import STALE_AFTER, RecoveryService


def register(sub: Any) -> None:
    p = sub.add_parser(
        "recover",
        help="mark agents whose runtime or heartbeat is gone as stopped",
        description=(
            "Find live-state agents with no running town, or whose heartbeat is older than\n"
            "--stale seconds, and mark them stopped (the reason is kept). Their messages and\n"
            "tasks are untouched: move them with 'tt reclaim' or bring the agent back with\n"
            "'tt restart'."
        ),
    )
    p.add_argument(
        "--stale",
        type=float,
        default=STALE_AFTER,
        metavar="SECONDS",
        help=f"heartbeat age that counts as gone (default {STALE_AFTER:g})",
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be marked")
    add_json_flag(p)
    p.set_defaults(handler=cmd_recover, town="required")

    p = sub.add_parser(
        "reclaim",
        help="list, or move, the work of dead agents (never destroys messages)",
        description=(
            "Without --to or --to-backlog, list what dead (stopped, cold, error) agents still\n"
            "hold: queued and in-flight messages, and unfinished tasks assigned to dead or\n"
            "missing agents. With --to-backlog, tasks go back to the backlog and other\n"
            "messages to the supervisor's inbox; with --to AGENT, everything goes to AGENT.\n"
            "Each move is atomic; nothing is dropped."
        ),
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--to", metavar="AGENT", help="give the work to this live agent")
    where.add_argument("--to-backlog", action="store_true", help="requeue tasks to the backlog")
    p.add_argument("--from", dest="from_agent", metavar="AGENT", help="only this dead agent")
    add_json_flag(p)
    p.set_defaults(handler=cmd_reclaim, town="required")


def _service(ctx: Context) -> RecoveryService:
    town = ctx.need_town()
    return RecoveryService(town.store, town.agents, town.tasks)


async def cmd_recover(ctx: Context, args: argparse.Namespace) -> int:
    service = _service(ctx)
    found = await (service.orphans(args.stale) if args.dry_run else service.recover(args.stale))
    if ctx.json:
        ctx.out.json(
            [
                {"agent": record(o.agent), "heartbeat_age": o.heartbeat_age, "why": o.why}
                for o in found
            ]
        )
        return 0
    if not found:
        ctx.out.line("No orphaned agents.")
        return 0
    verb = "Would mark" if args.dry_run else "Marked"
    for orphan in found:
        age = duration(orphan.heartbeat_age) if orphan.heartbeat_age is not None else "?"
        ctx.out.line(
            f"{verb} {orphan.agent.name} ({orphan.agent.state.value}) stopped: {orphan.why}"
            f" (last heartbeat {age} ago)"
        )
    if not args.dry_run:
        ctx.out.line("Move their work with 'tt reclaim --to-backlog' or 'tt reclaim --to AGENT'.")
    return 0


async def cmd_reclaim(ctx: Context, args: argparse.Namespace) -> int:
    service = _service(ctx)
    if not (args.to or args.to_backlog):
        found = await service.reclaimable(args.from_agent)
        if ctx.json:
            ctx.out.json(
                {
                    "messages": [
                        {"agent": a.name, "list": key, "message": record(m)}
                        for a, key, m in found.messages
                    ],
                    "tasks": [record(t) for t in found.tasks],
                }
            )
            return 0
        if not found.messages and not found.tasks:
            ctx.out.line("Nothing to reclaim.")
            return 0
        for agent, key, msg in found.messages:
            where = "in flight" if ":inflight:" in key else "queued"
            ctx.out.line(f"{agent.name}: {where} {msg.type.value} {clip(msg.text, 70)}")
        names = await ctx.names()
        for task in found.tasks:
            owner = names.get(task.assigned_to or "", short(task.assigned_to))
            ctx.out.line(
                f"task {short(task.id)} ({task.state.value}, {owner}): {clip(task.description, 60)}"
            )
        ctx.out.line(
            f"{plural(len(found.messages), 'message')} and {plural(len(found.tasks), 'task')}"
            " can be reclaimed: add --to-backlog or --to AGENT."
        )
        return 0
    report = await service.reclaim(to=args.to, from_agent=args.from_agent)
    if ctx.json:
        ctx.out.json(record(report))
        return 0
    ctx.out.line(
        f"Moved {plural(report.moved_messages, 'message')} and requeued"
        f" {plural(report.requeued_tasks, 'task')} to {report.destination}."
    )
    return 0
