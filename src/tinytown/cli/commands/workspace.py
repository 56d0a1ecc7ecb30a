"""Workspace commands: ``diff``, ``merge``, ``rescue list|restore`` (docs/workspaces.md)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from tinytown.cli.commands.agents import AGENT_HELP, seconds
from tinytown.cli.context import Context, UsageError
from tinytown.cli.output import add_json_flag, record

if TYPE_CHECKING:
    from tinytown.services.workspace.merges import MergeOutcome

#: Exit code of ``tt merge --wait`` (and ``--dry-run``) when a merge would not or did not
#: land: a conflict, a failing check (1 stays "error").
NOT_MERGED_EXIT = 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help="show an agent's work against the base branch",
        description=(
            "Show what an agent with a worktree changed against the town's base branch:\n"
            "its commits and its uncommitted changes (git diff from where its branch left\n"
            "the base), then its untracked files."
        ),
    )
    p.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
    p.add_argument("--stat", action="store_true", help="a summary per file (git diff --stat)")
    p.set_defaults(handler=cmd_diff, town="required", readonly=True)

    p = sub.add_parser(
        "merge",
        help="queue agents' branches for merging into the base",
        description=(
            "Put an agent's branch (tt/NAME) in the merge queue, which the running town\n"
            "works one at a time: merged onto the current base in a scratch worktree,\n"
            "[workspace] check run there, and the base fast-forwarded only if it passes.\n"
            "A conflict or a failing check leaves the base untouched. --dry-run says what\n"
            "would happen now, changing nothing. Nothing is pushed unless [workspace]\n"
            "push = true.\n\n"
            f"Exit codes: 0 queued or merged, {NOT_MERGED_EXIT} not mergeable or error."
        ),
    )
    p.add_argument("agents", nargs="*", metavar="AGENT", help=AGENT_HELP)
    p.add_argument("--all", action="store_true", help="every agent with a worktree")
    p.add_argument("--dry-run", action="store_true", help="say what would happen; change nothing")
    p.add_argument("--wait", action="store_true", help="wait until the town has merged them")
    p.add_argument(
        "--timeout", type=seconds, metavar="SECONDS", help="with --wait: give up after SECONDS"
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_merge, town="required")

    p = sub.add_parser(
        "rescue",
        help="list or restore work saved before a worktree was removed",
        description=(
            "Work is never lost: removing a worktree that holds commits the base lacks or\n"
            "uncommitted changes is refused unless --force, which first saves it under\n"
            "refs/tt/rescue/NAME/TIMESTAMP (uncommitted changes as a commit)."
        ),
    )
    verbs = p.add_subparsers(title="subcommands", metavar="SUBCOMMAND", dest="verb")
    p.set_defaults(handler=cmd_rescue_list, town="required", readonly=True, name=None)
    q = verbs.add_parser("list", help="saved work, oldest first", description="List saved work.")
    q.add_argument("name", nargs="?", metavar="NAME", help="only this agent's")
    add_json_flag(q)
    q.set_defaults(handler=cmd_rescue_list, readonly=True)
    q = verbs.add_parser(
        "restore",
        help="bring saved work back as a branch",
        description=(
            "Create a branch at saved work (default tt/NAME, which 'tt spawn NAME\n"
            "--worktree' then checks out). An existing branch is never overwritten."
        ),
    )
    q.add_argument("ref", metavar="RESCUE", help="NAME (its newest), NAME/TIMESTAMP or the ref")
    q.add_argument("--branch", metavar="BRANCH", help="the branch to create")
    add_json_flag(q)
    q.set_defaults(handler=cmd_rescue_restore, readonly=False)


async def cmd_diff(ctx: Context, args: argparse.Namespace) -> int:
    text = await ctx.need_town().workspaces.diff(args.agent, stat=args.stat)
    if text:
        ctx.out.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        ctx.out.line("No changes against the base.")
    return 0


def _outcome(outcome: MergeOutcome) -> dict[str, Any]:
    return {**record(outcome), "ok": outcome.ok}


async def cmd_merge(ctx: Context, args: argparse.Namespace) -> int:
    from tinytown.services.workspace.requests import position_text

    town = ctx.need_town()
    service = town.workspaces
    if args.all == bool(args.agents):
        raise UsageError("Name the agents to merge, or give --all (not both).")
    refs = [a.name for a in await service.with_worktrees()] if args.all else args.agents
    if not refs:
        ctx.out.line("No agent has a worktree; nothing to merge.")
        return 0
    if args.dry_run:
        outcomes = [await service.preview(ref) for ref in refs]
        if ctx.json:
            ctx.out.json([_outcome(o) for o in outcomes])
        for outcome in outcomes if not ctx.json else []:
            ctx.out.line(f"{outcome.status}: {outcome.text}.")
        return 0 if all(o.ok for o in outcomes) else NOT_MERGED_EXIT
    after = await town.store.events.last_id()
    queued = [await service.merge(ref) for ref in refs]
    running = await service.running()
    if not args.wait:
        if ctx.json:
            ctx.out.json(
                [{**record(q.request), "position": q.position, "new": q.new} for q in queued]
            )
        for q in queued if not ctx.json else []:
            ctx.out.line(position_text(q.request, q.position, q.new, running))
        return 0
    if not running:
        ctx.out.warn(f"Town {town.name} is not running; waiting for 'tt run' to merge.")
    results = []
    for q in queued:
        # a request queued earlier (kept its place) may have finished before this
        # command started: look from the start of the event stream for it
        since = after if q.new else "0-0"
        fields = await service.wait_merged(q.request, since, timeout=args.timeout)
        results.append(fields)
        if not ctx.json:
            ctx.out.line(f"{fields.get('status')}: {fields.get('text')}.")
    if ctx.json:
        ctx.out.json(results)
    good = ("merged", "up-to-date")
    return 0 if all(f.get("status") in good for f in results) else NOT_MERGED_EXIT


async def cmd_rescue_list(ctx: Context, args: argparse.Namespace) -> int:
    found = await ctx.need_town().workspaces.rescues(args.name)
    if ctx.json:
        ctx.out.json([record(r) for r in found])
        return 0
    if not found:
        ctx.out.line("No rescued work.")
        return 0
    ctx.out.table(
        [[r.name, r.stamp, r.commit[:12], r.subject] for r in found],
        ["AGENT", "SAVED", "COMMIT", "SUBJECT"],
    )
    return 0


async def cmd_rescue_restore(ctx: Context, args: argparse.Namespace) -> int:
    branch, commit = await ctx.need_town().workspaces.restore(args.ref, branch=args.branch)
    if ctx.json:
        ctx.out.json({"branch": branch, "commit": commit})
    else:
        ctx.out.line(f"Restored {args.ref} as branch {branch} ({commit[:12]}).")
    return 0
