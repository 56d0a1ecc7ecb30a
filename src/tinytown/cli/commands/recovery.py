"""Recovery commands: ``recover`` and ``reclaim`` (they never destroy work)."""

from __future__ import annotations

import argparse
from typing import Any

from tinytown.cli.context import Context, UsageError
from tinytown.cli.output import add_json_flag, clip, duration, plural, record, short
from tinytown.services.recovery import STALE_AFTER, ReclaimReport, RecoveryService, StuckTask


def register(sub: Any) -> None:
    p = sub.add_parser(
        "recover",
        help="mark agents whose runtime is gone as stopped; requeue work nobody is doing",
        description=(
            "Find live-state agents with no running town, or whose heartbeat is older than\n"
            "--stale seconds, and mark them stopped (the reason is kept). Then find tasks\n"
            "assigned or running to an agent that will not do them (the agent is gone,\n"
            "cold, stopped or error, or it neither holds the task's assignment message nor\n"
            "works on it) and put them back in the backlog (attempts keep counting). Each\n"
            "task is judged and requeued atomically. Other messages of stopped agents stay:\n"
            "move them with 'tt reclaim' or bring the agent back with 'tt restart'.\n"
            "--dry-run lists what would be done and changes nothing."
        ),
    )
    p.add_argument(
        "--stale",
        type=float,
        default=STALE_AFTER,
        metavar="SECONDS",
        help=f"heartbeat age that counts as gone (default {STALE_AFTER:g})",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="only list what would be marked and requeued"
    )
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
    return ctx.need_town().recovery


def _stuck_record(item: StuckTask) -> dict[str, Any]:
    return {
        "task": record(item.task),
        "agent": item.agent.name if item.agent else None,
        "why": item.why,
    }


async def cmd_recover(ctx: Context, args: argparse.Namespace) -> int:
    if not args.stale >= 0:
        raise UsageError("--stale needs 0 seconds or more.")
    report = await _service(ctx).recover(args.stale, dry_run=args.dry_run)
    if ctx.json:
        ctx.out.json(
            {
                "dry_run": args.dry_run,
                "agents": [
                    {"agent": record(o.agent), "heartbeat_age": o.heartbeat_age, "why": o.why}
                    for o in report.agents
                ],
                "tasks": [_stuck_record(t) for t in report.tasks],
            }
        )
        return 0
    if not report.agents and not report.tasks:
        ctx.out.line("No orphaned agents and no stuck tasks.")
        return 0
    verb = "Would mark" if args.dry_run else "Marked"
    for orphan in report.agents:
        age = duration(orphan.heartbeat_age) if orphan.heartbeat_age is not None else "?"
        ctx.out.line(
            f"{verb} {orphan.agent.name} ({orphan.agent.state.value}) stopped: {orphan.why}"
            f" (last heartbeat {age} ago)"
        )
    requeue = "Would requeue" if args.dry_run else "Requeued"
    for item in report.tasks:
        ctx.out.line(
            f"{requeue} task {short(item.task.id)} ({item.task.state.value}): {item.why}:"
            f" {clip(item.task.description, 60)}"
        )
    if report.agents and not args.dry_run:
        ctx.out.line(
            "Move their other messages with 'tt reclaim --to-backlog' or 'tt reclaim --to AGENT'."
        )
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
        ctx.out.json({**record(report), "moved_messages": report.moved_messages})
        return 0
    for line in reclaim_lines(report):
        ctx.out.line(line)
    return 0


def reclaim_lines(report: ReclaimReport) -> list[str]:
    """What moved where, one line per destination ("Nothing to move." when nothing)."""
    if report.nothing:
        return ["Nothing to move."]
    lines = [
        f"Moved {plural(n, 'message')} to "
        + ("the supervisor's inbox" if where == "supervisor" else where)
        + "."
        for where, n in report.delivered.items()
    ]
    if report.assigned_tasks:
        lines.append(f"Assigned {plural(report.assigned_tasks, 'task')} to {report.destination}.")
    if report.requeued_tasks:
        lines.append(f"Requeued {plural(report.requeued_tasks, 'task')} to the backlog.")
    if report.spent_assignments:
        lines.append(
            f"Dropped {plural(report.spent_assignments, 'task assignment')} whose task had"
            " already left the agent (requeued when it was killed, or finished)."
        )
    return lines
