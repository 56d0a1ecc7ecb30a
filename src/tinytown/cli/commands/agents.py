"""Agent commands: ``spawn``, ``list``, the control verbs, ``wait``, ``prune``."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any, TextIO

import trio

from tinytown.cli.context import Context, UsageError
from tinytown.cli.output import add_json_flag, record, short
from tinytown.errors import TimeoutExpiredError
from tinytown.model import Agent, SpawnMode
from tinytown.services.costs import describe_budget, parse_budget

if TYPE_CHECKING:
    from tinytown.services.lifecycle import ControlOutcome

#: Exit code of ``tt wait`` when its --timeout expires (1 stays "error").
WAIT_TIMEOUT_EXIT = 3

AGENT_HELP = "agent name, nickname, id or id prefix (4+ hex)"

CONTROL_VERBS = {
    "interrupt": (
        "pause an agent now (its running CLI is suspended)",
        "Pause the agent: it takes no new messages and its running CLI's process group is\n"
        "suspended (SIGSTOP) until 'tt resume'.",
    ),
    "resume": (
        "continue a paused agent",
        "Continue a paused agent: its CLI continues (SIGCONT) and it takes messages again.",
    ),
    "close": (
        "let an agent finish its round, then stop (cold)",
        "Drain the agent: no new messages, the current round finishes, then it is cold.",
    ),
    "kill": (
        "stop an agent now; its unfinished work goes back to the queue",
        "Stop the agent now: its CLI's process group gets SIGTERM, then SIGKILL after a grace\n"
        "period. Its in-flight messages go back to its inbox and its unfinished tasks back\n"
        "to the backlog.",
    ),
    "restart": (
        "start a stopped, cold or failed agent again (same id)",
        "Bring a terminal (stopped, cold or error) agent back, keeping its id, name and inbox.",
    ),
}


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"needs 0 seconds or more, not {text!r}")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser(
        "spawn",
        help="create an agent",
        description=(
            "Register a new agent. A running town starts it at once; otherwise it starts\n"
            "with 'tt run'. The CLI must be installed: a preset name (claude, codex, aider,\n"
            "... or one from [agent_clis] in tinytown.toml) or a command line."
        ),
    )
    p.add_argument("name", metavar="NAME", help="unique agent name (letters, digits, . _ -)")
    p.add_argument("--cli", "-c", help="CLI preset or command (default: default_cli)")
    p.add_argument(
        "--role",
        help="role: worker, reviewer, researcher, architect, tester, devops, or any other word",
    )
    p.add_argument("--nickname", help="display name (default: chosen from the id)")
    p.add_argument("--parent", metavar="AGENT", help="parent agent (needed for forkedcontext)")
    p.add_argument(
        "--mode",
        choices=[m.value for m in SpawnMode],
        default=None,
        help=(
            "fresh (default: a new CLI session each round), forkedcontext (starts with the"
            " parent's recent results), resumed (continues its CLI session every round)"
        ),
    )
    p.add_argument("--max-rounds", type=int, metavar="N", help="go cold after N rounds")
    p.add_argument("--scope", help="free-text scope of the agent's work (shown in its prompt)")
    p.add_argument(
        "--worktree",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="work in its own git worktree on branch tt/NAME (default: [workspace] mode)",
    )
    p.add_argument(
        "--budget",
        action="append",
        metavar="AMOUNT",
        help=(
            "its own spending limit: dollars (5, 2.50, $5) or tokens (200k, 1.5M,"
            " 50000tokens); give both with two --budget (docs/costs.md)"
        ),
    )
    p.add_argument(
        "--resume-session",
        metavar="ID",
        help="continue this CLI session (e.g. a claude session id); implies --mode resumed",
    )
    p.add_argument(
        "--count",
        type=int,
        metavar="N",
        help="create N agents NAME-1 .. NAME-N in one atomic step (with --cli, --role only)",
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_spawn, town="required")

    p = sub.add_parser("list", help="list the agents", description="List the town's agents.")
    add_json_flag(p)
    p.set_defaults(handler=cmd_list, town="required")

    for verb, (short_help, description) in CONTROL_VERBS.items():
        p = sub.add_parser(verb, help=short_help, description=description)
        p.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
        add_json_flag(p)
        p.set_defaults(handler=cmd_control, verb=verb, town="required")

    p = sub.add_parser(
        "wait",
        help="wait until an agent stops (or is idle)",
        description=(
            "Block until the agent is in a terminal state (stopped, cold, error), or with\n"
            "--idle until it is idle with an empty inbox. On a terminal, a line on stderr\n"
            "says what it waits for and for how long (nothing when stderr is not one).\n\n"
            f"Exit codes: 0 reached, {WAIT_TIMEOUT_EXIT} --timeout expired, 1 error."
        ),
    )
    p.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
    p.add_argument(
        "--timeout", type=seconds, metavar="SECONDS", help="give up after SECONDS (0 or more)"
    )
    p.add_argument("--idle", action="store_true", help="wait for idle with an empty inbox")
    add_json_flag(p)
    p.set_defaults(handler=cmd_wait, town="required")

    p = sub.add_parser(
        "prune",
        help="remove stopped, cold and failed agents",
        description=(
            "Remove terminal agents. Nothing they hold is lost: unfinished tasks go back to\n"
            "the backlog and their other messages to the supervisor's inbox first. --all\n"
            "removes every agent, and only while the town is not running."
        ),
    )
    p.add_argument("--all", action="store_true", help="remove all agents (town not running)")
    p.add_argument(
        "--force",
        action="store_true",
        help="remove worktrees holding work the base lacks (saved to refs/tt/rescue/ first)",
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_prune, town="required")


async def cmd_spawn(ctx: Context, args: argparse.Namespace) -> int:
    from tinytown.services.doctor import root_notice

    town = ctx.need_town()
    if args.resume_session is not None and args.mode not in (None, SpawnMode.RESUMED.value):
        raise UsageError("--resume-session continues a session: give --mode resumed or no --mode.")
    if args.count is not None:
        return await _spawn_count(ctx, args)
    budget = parse_budget(args.budget or [])
    agent = await town.agents.spawn(
        args.name,
        args.cli,
        role=args.role,
        nickname=args.nickname,
        parent=args.parent,
        mode=args.mode or SpawnMode.FRESH.value,
        max_rounds=args.max_rounds,
        scope=args.scope,
        budget=budget,
        session_id=args.resume_session,
        worktree=args.worktree,
    )
    running = await town.runtime() is not None
    if notice := root_notice(agent.cli, town.config.cli_spec(agent.cli).argv):
        ctx.out.warn(notice)  # claude refuses its bypass as root (tt doctor says it too)
    safety = await town.agents.safety_notice_once(agent.cli)
    if ctx.json:
        ctx.out.json(record(agent))
        if safety:  # stdout stays one JSON document
            print(safety, file=ctx.out.stderr, flush=True)
        return 0
    role = f", role {agent.role_id}" if agent.role_id else ""
    ctx.out.line(
        f"Spawned {agent.name} ({agent.nickname}), id {agent.short_id}, cli {agent.cli}{role}."
    )
    if agent.budget is not None:
        ctx.out.line(f"Budget: {describe_budget(agent.budget)} (besides the town's [budget]).")
    if agent.session_id:
        ctx.out.line(f"Resumes session {agent.session_id} in every round.")
    if agent.worktree:
        ctx.out.line(f"Works in {agent.worktree} on branch {agent.branch}.")
    _say_when_they_start(ctx, safety, running, "it", "the agent starts")
    return 0


def _say_when_they_start(
    ctx: Context, safety: str | None, running: bool, them: str, they_start: str
) -> None:
    """The spawn's closing lines: the permission notice (once per town and CLI), and
    when the new agent(s) start."""
    if safety:
        ctx.out.line(safety)
    if running:
        ctx.out.line(f"The running town starts {them} now.")
    else:
        ctx.out.line(f"Town is not running; {they_start} with 'tt run'.")


async def _spawn_count(ctx: Context, args: argparse.Namespace) -> int:
    """``tt spawn NAME --count N``: agents NAME-1 .. NAME-N in one atomic write
    (AgentService.spawn_many): all or none."""
    town = ctx.need_town()
    if args.count < 1:
        raise UsageError("--count needs 1 or more agents.")
    given = [
        f"--{key.replace('_', '-')}"
        for key in ("nickname", "parent", "mode", "max_rounds", "scope", "budget")
        if getattr(args, key) is not None
    ]
    given += ["--resume-session"] if args.resume_session is not None else []
    given += ["--worktree/--no-worktree"] if args.worktree is not None else []
    if given:
        raise UsageError(f"--count spawns with --cli and --role only, not {', '.join(given)}.")
    names = [f"{args.name}-{i}" for i in range(1, args.count + 1)]
    agents = await town.agents.spawn_many(names, args.cli, role=args.role)
    running = await town.runtime() is not None
    from tinytown.services.doctor import root_notice

    if notice := root_notice(agents[0].cli, town.config.cli_spec(agents[0].cli).argv):
        ctx.out.warn(notice)
    safety = await town.agents.safety_notice_once(agents[0].cli)
    if ctx.json:
        ctx.out.json([record(a) for a in agents])
        if safety:
            print(safety, file=ctx.out.stderr, flush=True)
        return 0
    role = f", role {agents[0].role_id}" if agents[0].role_id else ""
    span = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
    ctx.out.line(f"Spawned {len(agents)} agent(s) {span}, cli {agents[0].cli}{role}.")
    _say_when_they_start(ctx, safety, running, "them", "they start")
    return 0


async def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    agents = await town.agents.list()
    counts = await ctx.inbox_counts(a.id for a in agents)
    if ctx.json:
        ctx.out.json(
            [{**record(a), "inbox": counts[a.id][0], "inflight": counts[a.id][1]} for a in agents]
        )
        return 0
    if not agents:
        ctx.out.line("No agents. Run 'tt spawn NAME' to create one.")
        return 0
    rows = [
        [
            a.name,
            a.nickname,
            a.role_id,
            a.state.value,
            short(a.current_task),
            sum(counts[a.id]),
            a.short_id,
        ]
        for a in agents
    ]
    ctx.out.table(rows, ["NAME", "NICKNAME", "ROLE", "STATE", "TASK", "INBOX", "ID"])
    return 0


def _report(ctx: Context, outcome: ControlOutcome) -> None:
    agent = outcome.agent
    if ctx.json:
        ctx.out.json({**record(agent), "live": outcome.live, "detail": outcome.detail})
        return
    note = f" ({outcome.detail})" if outcome.detail else ""
    if not outcome.live:
        note += " (town not running; recorded)"
    ctx.out.line(f"{agent.name} ({agent.nickname}): {agent.state.value}{note}")


async def cmd_control(ctx: Context, args: argparse.Namespace) -> int:
    lifecycle = ctx.need_town().lifecycle
    verb = {
        "interrupt": lifecycle.interrupt,
        "resume": lifecycle.resume,
        "close": lifecycle.close,
        "kill": lifecycle.kill,
        "restart": lifecycle.restart,
    }[args.verb]
    _report(ctx, await verb(args.agent))
    return 0


async def cmd_wait(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    name = (await town.agents.resolve(args.agent)).name
    goal = "be idle with an empty inbox" if args.idle else "stop (stopped, cold or error)"
    failure: Exception | None = None
    async with trio.open_nursery() as nursery:
        if _is_tty(ctx.out.stderr):  # scripts (a pipe, a file) get nothing
            limit = f" of {args.timeout:g}s" if args.timeout is not None else ""
            nursery.start_soon(_progress, ctx.out.stderr, f"waiting for {name} to {goal}", limit)
        try:
            agent = await town.agents.wait(args.agent, timeout=args.timeout, idle=args.idle)
        except Exception as exc:  # raised below, outside the nursery (no exception group)
            failure = exc
        finally:
            nursery.cancel_scope.cancel()
    if isinstance(failure, TimeoutExpiredError):
        ctx.out.error(str(failure))
        return WAIT_TIMEOUT_EXIT
    if failure is not None:
        raise failure
    if ctx.json:
        ctx.out.json(record(agent))
    else:
        ctx.out.line(f"{agent.name} ({agent.nickname}): {agent.state.value}")
    return 0


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


async def _progress(stream: TextIO, what: str, limit: str) -> None:
    """One line on a terminal, rewritten every second: what is awaited and for how long;
    erased when the wait ends (or is cancelled). Cancellable."""
    started = trio.current_time()
    try:
        while True:
            elapsed = int(trio.current_time() - started)
            stream.write(f"\r\x1b[Ktt: {what}… {elapsed}s{limit}")
            stream.flush()
            await trio.sleep(1 - (trio.current_time() - started) % 1)
    finally:
        stream.write("\r\x1b[K")
        stream.flush()


async def cmd_prune(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    removed: list[Agent] = await town.lifecycle.prune(everything=args.all, force=args.force)
    if ctx.json:
        ctx.out.json([record(a) for a in removed])
    elif removed:
        names = ", ".join(a.name for a in removed)
        ctx.out.line(f"Removed {len(removed)} agent(s): {names}.")
    else:
        ctx.out.line("Nothing to prune.")
    return 0
