"""Task commands: ``assign``, ``tasks``, ``task show|complete|fail|cancel|current``,
``backlog add|list|claim|assign-all|remove``."""

from __future__ import annotations

import argparse
from typing import Any

from tinytown.cli.context import Context
from tinytown.cli.output import add_json_flag, ago, clip, plural, record, short, stamp_local
from tinytown.errors import InvalidInputError
from tinytown.model import Task, TaskState

TASK_HELP = "task id or unique id prefix (4+ hex)"
AGENT_HELP = "agent name, nickname, id or id prefix"


def task_state(text: str) -> TaskState:
    try:
        return TaskState.parse(text)
    except ValueError:
        names = ", ".join(s.value for s in TaskState)
        raise argparse.ArgumentTypeError(f"unknown task state {text!r} (use {names})") from None


def add_tag_options(p: argparse.ArgumentParser, what: str = "tag the task") -> None:
    p.add_argument(
        "--tag", dest="tags", action="append", metavar="TAG", help=f"{what} (repeatable)"
    )
    p.add_argument(
        "--tags", dest="tags", action="append", metavar="A,B", help="comma-separated tags"
    )


def attempts(text: str) -> int:
    """An argparse type: a number of attempts, 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs 1 or more, not {text!r}")
    return value


def add_attempts_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-attempts",
        type=attempts,
        metavar="N",
        help="rounds that may fail before the task does (default: runtime.max_attempts)",
    )


def tags_of(args: argparse.Namespace) -> list[str]:
    """Tags from every --tag and --tags option, split on commas, in order, no duplicates."""
    tags = [t.strip() for given in args.tags or () for t in given.split(",")]
    return list(dict.fromkeys(t for t in tags if t))


def register(sub: Any) -> None:
    p = sub.add_parser(
        "assign",
        help="create a task and assign it to an agent",
        description=(
            "Create a task assigned to AGENT and put a task_assign message in its inbox.\n"
            "A cold, stopped or error agent takes no work: that is refused, or with\n"
            "--anyone the task goes to the backlog for any agent instead."
        ),
    )
    p.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
    p.add_argument("description", metavar="DESC", help="what to do")
    add_tag_options(p)
    p.add_argument("--parent", metavar="TASK", help="parent task (for sub-tasks)")
    p.add_argument(
        "--anyone",
        action="store_true",
        help="if AGENT cannot take work (cold, stopped, error), put the task in the backlog",
    )
    add_attempts_option(p)
    add_json_flag(p)
    p.set_defaults(handler=cmd_assign, town="required")

    p = sub.add_parser("tasks", help="list tasks", description="List tasks, oldest first.")
    p.add_argument("--state", type=task_state, help="only tasks in this state")
    p.add_argument(
        "--tag",
        dest="tags",
        action="append",
        metavar="TAG",
        help="only tasks with this tag (repeatable: all must match)",
    )
    p.add_argument("--agent", metavar="AGENT", help="only tasks assigned to this agent")
    p.add_argument("--tree", action="store_true", help="show sub-tasks under their parents")
    add_json_flag(p)
    p.set_defaults(handler=cmd_tasks, town="required")

    task = sub.add_parser("task", help="show or change one task", description="One task.")
    verbs = task.add_subparsers(title="commands", metavar="COMMAND", required=True)
    p = verbs.add_parser("show", help="show a task", description="Show every field of a task.")
    p.add_argument("task", metavar="TASK", help=TASK_HELP)
    add_json_flag(p)
    p.set_defaults(handler=cmd_task_show, town="required")
    for verb, option, default, text in (
        ("complete", "--result", "Completed", "mark a task completed (its assigner is told)"),
        ("fail", "--reason", "Failed", "mark a task failed (its assigner is told)"),
        ("cancel", "--reason", "Cancelled", "cancel a task that is not finished"),
    ):
        p = verbs.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("task", metavar="TASK", help=TASK_HELP)
        p.add_argument(
            option,
            dest="text",
            metavar="TEXT",
            default=default,
            help=f"{option[2:]} text (default: {default})",
        )
        add_json_flag(p)
        p.set_defaults(handler=cmd_task_finish, verb=verb, town="required")
    p = verbs.add_parser(
        "current",
        help="show an agent's current task",
        description="Show the agent's current task. Without AGENT: the agent whose round runs\n"
        "this command (TT_AGENT_ID).",
    )
    p.add_argument("agent", nargs="?", metavar="AGENT", help=AGENT_HELP)
    add_json_flag(p)
    p.set_defaults(handler=cmd_task_current, town="required")

    backlog = sub.add_parser(
        "backlog",
        help="tasks waiting for an agent",
        description="The backlog: tasks waiting"
        " for an agent. A running town hands them to idle agents whose role or tags match.\n"
        "Without a command: list it (as 'tt backlog list').",
    )
    backlog.set_defaults(handler=cmd_backlog_list, town="required")
    verbs = backlog.add_subparsers(title="commands", metavar="COMMAND", required=False)
    p = verbs.add_parser(
        "add", help="add a task to the backlog", description="Add a task to the backlog."
    )
    p.add_argument("description", metavar="DESC", help="what to do")
    add_tag_options(p)
    add_attempts_option(p)
    add_json_flag(p)
    p.set_defaults(handler=cmd_backlog_add, town="required")
    p = verbs.add_parser(
        "list", help="list the backlog", description="List backlog tasks in queue order."
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_backlog_list, town="required")
    p = verbs.add_parser(
        "claim",
        help="assign a backlog task to an agent",
        description="Assign a backlog task to an agent.",
    )
    p.add_argument("task", metavar="TASK", help=TASK_HELP)
    p.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
    add_json_flag(p)
    p.set_defaults(handler=cmd_backlog_claim, town="required")
    p = verbs.add_parser(
        "assign-all",
        help="assign every backlog task to an agent",
        description="Assign every backlog task to one agent.",
    )
    p.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
    add_json_flag(p)
    p.set_defaults(handler=cmd_backlog_assign_all, town="required")
    p = verbs.add_parser(
        "remove",
        help="take a task out of the backlog (it is cancelled)",
        description="Take a task out of the backlog; it is cancelled, not deleted.",
    )
    p.add_argument("task", metavar="TASK", help=TASK_HELP)
    add_json_flag(p)
    p.set_defaults(handler=cmd_backlog_remove, town="required")


# -- helpers ---------------------------------------------------------------------------------


async def _task_rows(
    ctx: Context, tasks: list[Task], depth: dict[str, int] | None = None
) -> list[list[object]]:
    names = await ctx.names()
    rows: list[list[object]] = []
    for task in tasks:
        indent = "  " * (depth or {}).get(task.id, 0)
        rows.append(
            [
                indent + task.short_id,
                task.state.value,
                names.get(task.assigned_to or "", short(task.assigned_to))
                if task.assigned_to
                else None,
                ",".join(task.tags),
                clip(task.description, 70 - len(indent)),
            ]
        )
    return rows


def _as_tree(tasks: list[Task]) -> tuple[list[Task], dict[str, int]]:
    """Tasks ordered parent-first with each one's depth; orphans stay at the top level."""
    present = {t.id for t in tasks}
    children: dict[str | None, list[Task]] = {}
    for task in tasks:
        parent = task.parent_id if task.parent_id in present else None
        children.setdefault(parent, []).append(task)
    ordered: list[Task] = []
    depth: dict[str, int] = {}

    def walk(parent: str | None, level: int) -> None:
        for task in children.get(parent, []):
            if task.id in depth:
                continue  # a cycle in parent links: show each task once
            ordered.append(task)
            depth[task.id] = level
            walk(task.id, level + 1)

    walk(None, 0)
    for task in tasks:  # members of a parent cycle are unreachable from the top
        if task.id not in depth:
            ordered.append(task)
            depth[task.id] = 0
    return ordered, depth


async def _print_tasks(ctx: Context, tasks: list[Task], empty: str, tree: bool = False) -> None:
    if ctx.json:
        ctx.out.json([record(t) for t in tasks])
        return
    if not tasks:
        ctx.out.line(empty)
        return
    depth = None
    if tree:
        tasks, depth = _as_tree(tasks)
    ctx.out.table(
        await _task_rows(ctx, tasks, depth), ["ID", "STATE", "AGENT", "TAGS", "DESCRIPTION"]
    )


async def _print_task(ctx: Context, task: Task) -> None:
    default_attempts = int(ctx.need_town().config.setting("runtime.max_attempts"))
    if ctx.json:
        most = task.max_attempts or default_attempts
        ctx.out.json({**record(task), "max_attempts_in_force": most})
        return
    out = ctx.out
    out.line(f"Task {task.id}")
    out.line(f"  state:       {task.state.value}")
    out.line(f"  description: {task.description}")
    if task.assigned_to:
        out.line(f"  assigned to: {await ctx.name_of(task.assigned_to)}")
    if task.assigned_by:
        out.line(f"  assigned by: {await ctx.name_of(task.assigned_by)}")
    if task.tags:
        out.line(f"  tags:        {', '.join(task.tags)}")
    if task.parent_id:
        out.line(f"  parent:      {task.parent_id}")
    if task.plan_id:
        out.line(f"  plan id:     {task.plan_id}")
    out.line(f"  created:     {stamp_local(task.created_at)} ({ago(task.created_at)})")
    out.line(f"  updated:     {stamp_local(task.updated_at)}")
    if task.started_at:
        out.line(f"  started:     {stamp_local(task.started_at)}")
    if task.completed_at:
        out.line(f"  finished:    {stamp_local(task.completed_at)}")
    most = task.max_attempts or default_attempts
    whose = "" if task.max_attempts else " (runtime.max_attempts)"
    out.line(f"  attempts:    {task.attempts} of {most}{whose}")
    if not task.usage.empty:
        from tinytown.services.costs import describe_usage  # not on `tt task complete`'s path

        u = task.usage
        out.line(
            f"  spent:       {describe_usage(u)} (in {u.input_tokens:,}, out"
            f" {u.output_tokens:,}, cached {u.cached_tokens:,}; {u.duration:.1f} s)"
        )
    if task.result:
        lines = task.result.splitlines() or [""]
        out.line(f"  result:      {lines[0]}")
        for line in lines[1:]:
            out.line(f"               {line}")


async def _done(ctx: Context, task: Task, text: str) -> None:
    if ctx.json:
        ctx.out.json(record(task))
    else:
        ctx.out.line(text)


# -- handlers --------------------------------------------------------------------------------


async def cmd_assign(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    task = await town.tasks.assign(
        args.agent,
        args.description,
        tags=tags_of(args),
        parent=args.parent,
        sender=ctx.sender,
        anyone=args.anyone,
        max_attempts=args.max_attempts,
    )
    if task.state is TaskState.PENDING:  # --anyone, and the agent could not take it
        text = f"{args.agent} takes no work now; added task {task.short_id} to the backlog instead."
    else:
        text = f"Assigned task {task.short_id} to {await ctx.name_of(task.assigned_to)}."
    await _done(ctx, task, text)
    return 0


async def cmd_tasks(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    agent_id = (await town.agents.resolve(args.agent)).id if args.agent else None
    tags = tags_of(args)
    tasks = await town.tasks.list(state=args.state, agent=agent_id)
    tasks = [t for t in tasks if all(tag in t.tags for tag in tags)]
    filtered = args.state or args.agent or tags
    await _print_tasks(ctx, tasks, "No tasks match." if filtered else "No tasks.", args.tree)
    return 0


async def cmd_task_show(ctx: Context, args: argparse.Namespace) -> int:
    await _print_task(ctx, await ctx.need_town().tasks.resolve(args.task))
    return 0


async def cmd_task_finish(ctx: Context, args: argparse.Namespace) -> int:
    tasks = ctx.need_town().tasks
    finish = {"complete": tasks.complete, "fail": tasks.fail, "cancel": tasks.cancel}[args.verb]
    task = await finish(args.task, args.text, sender=ctx.sender)
    await _done(ctx, task, f"Task {task.short_id} {task.state.value}.")
    return 0


async def cmd_task_current(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    ref = args.agent or ctx.agent_id
    if not ref:
        raise InvalidInputError("No agent given and TT_AGENT_ID is not set.")
    agent = await town.agents.resolve(ref)
    task = await town.tasks.current(agent.id)
    if ctx.json:
        ctx.out.json(None if task is None else record(task))
    elif task is None:
        ctx.out.line(f"{agent.name} has no current task.")
    else:
        await _print_task(ctx, task)
    return 0


async def cmd_backlog_add(ctx: Context, args: argparse.Namespace) -> int:
    task = await ctx.need_town().backlog.add(
        args.description, tags=tags_of(args), max_attempts=args.max_attempts
    )
    await _done(ctx, task, f"Added task {task.short_id} to the backlog.")
    return 0


async def cmd_backlog_list(ctx: Context, args: argparse.Namespace) -> int:
    tasks = await ctx.need_town().backlog.list()
    await _print_tasks(ctx, tasks, "The backlog is empty.")
    return 0


async def cmd_backlog_claim(ctx: Context, args: argparse.Namespace) -> int:
    task = await ctx.need_town().backlog.claim(args.task, args.agent, sender=ctx.sender)
    name = await ctx.name_of(task.assigned_to)
    await _done(ctx, task, f"Task {task.short_id} assigned to {name}.")
    return 0


async def cmd_backlog_assign_all(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    agent = await town.agents.resolve(args.agent)
    tasks: list[Task] = await town.backlog.assign_all(agent.id, sender=ctx.sender)
    if ctx.json:
        ctx.out.json([record(t) for t in tasks])
    else:
        ctx.out.line(f"Assigned {plural(len(tasks), 'task')} to {agent.name}.")
    return 0


async def cmd_backlog_remove(ctx: Context, args: argparse.Namespace) -> int:
    task = await ctx.need_town().backlog.remove(args.task)
    await _done(ctx, task, f"Removed task {task.short_id} from the backlog (cancelled).")
    return 0
