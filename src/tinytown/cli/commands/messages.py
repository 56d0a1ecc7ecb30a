"""Message commands: ``send``, ``inbox``, ``events``, ``history``."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncGenerator
from typing import Any, cast

from tinytown.cli.context import Context, UsageError
from tinytown.cli.output import (
    add_json_flag,
    clip,
    clock,
    event_record,
    plural,
    record,
)
from tinytown.model import Message
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.messages import BROADCAST_KIND, SEND_KIND, make_body
from tinytown.store.events import Event

#: Kinds of events ``tt history`` shows.
HISTORY_KINDS = frozenset({"message", "assign", "complete", "fail", "cancel", "broadcast"})
#: How far back ``history`` looks for matching events (the stream is capped anyway).
HISTORY_SCAN_LIMIT = 10_000

AGENT_HELP = "agent name, nickname, id or id prefix, or 'supervisor'"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "send",
        help="send a message to an agent, the supervisor, or everyone",
        usage=(
            "tt send [--task | --query | --info | --ack] [--urgent] [--from AGENT]"
            " (TO MSG | --all MSG)"
        ),
        description=(
            "Put a message in an agent's inbox (TO may be 'supervisor'), or with --all in\n"
            "every live agent's inbox at once. Without a type flag a message to one agent is\n"
            "work (a 'task': the agent runs a round for it and the sender gets the outcome),\n"
            "and a broadcast is a note ('informational': no round of its own, no reply; it\n"
            "rides along with each agent's next round, so it costs nothing by itself).\n"
            "--task makes a broadcast work for every agent (one paid round each).\n"
            "--urgent puts the message at the head of the inbox."
        ),
    )
    p.add_argument("to", nargs="?", metavar="TO", help=AGENT_HELP)
    p.add_argument("message", nargs="?", metavar="MSG", help="the message text")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument(
        "--task",
        dest="kind",
        action="store_const",
        const="task",
        help="work to do (the default for TO; each agent runs a round)",
    )
    kind.add_argument(
        "--query",
        dest="kind",
        action="store_const",
        const="query",
        help="a question that expects an answer",
    )
    kind.add_argument(
        "--info",
        dest="kind",
        action="store_const",
        const="info",
        help="an FYI: no round, no reply (the default for --all)",
    )
    kind.add_argument(
        "--ack",
        dest="kind",
        action="store_const",
        const="ack",
        help="a confirmation (received, approved, rejected: REASON, thanks)",
    )
    p.add_argument("--urgent", action="store_true", help="deliver ahead of queued messages")
    p.add_argument(
        "--from",
        dest="sender",
        metavar="AGENT",
        help="sender (default: TT_AGENT_ID, else the supervisor)",
    )
    p.add_argument("--all", action="store_true", help="broadcast to every live agent")
    add_json_flag(p)
    p.set_defaults(handler=cmd_send, kind=None, town="required")

    p = sub.add_parser(
        "inbox",
        help="show an agent's queued and in-flight messages",
        description=(
            "Show messages waiting for an agent and those it is working on, without taking\n"
            "them. AGENT may be 'supervisor' (messages to people). Default: the agent\n"
            "running this command (TT_AGENT_ID), else the supervisor."
        ),
    )
    p.add_argument("agent", nargs="?", metavar="AGENT", help=AGENT_HELP)
    p.add_argument(
        "--all", action="store_true", help="every agent with messages, and the supervisor"
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_inbox, town="required")

    p = sub.add_parser(
        "events",
        help="show (and follow) the town's event stream",
        description=(
            "Print the most recent events, oldest first, as 'HH:MM:SS [kind] agent: text'\n"
            "(the format of the REPL and of 'tt run'; short ids; a message to the supervisor\n"
            "reads '[mail] from AGENT: text' once). "
            "--follow then keeps printing new ones until Ctrl-C (with --json: one JSON\n"
            "object per line)."
        ),
    )
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--agent", metavar="AGENT", help="only events about this agent")
    p.add_argument("--since", metavar="ID", help="only events after this event id")
    p.add_argument(
        "-n",
        dest="count",
        type=int,
        default=20,
        metavar="COUNT",
        help="how many recent events (default: %(default)s)",
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_events, town="required")

    p = sub.add_parser(
        "history",
        help="recent messages, assignments and task outcomes",
        description=(
            "Recent messages, assignments, broadcasts and finished tasks, oldest first.\n"
            "--agent keeps the entries sent to or by that agent."
        ),
    )
    p.add_argument(
        "-n",
        dest="count",
        type=int,
        default=20,
        metavar="N",
        help="how many entries (default: %(default)s)",
    )
    p.add_argument("--agent", metavar="AGENT", help="only entries about this agent")
    add_json_flag(p)
    p.set_defaults(handler=cmd_history, town="required")


# -- send ------------------------------------------------------------------------------------


async def cmd_send(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    to, text = args.to, args.message
    if args.all:
        if text is not None:
            raise UsageError("Give either TO or --all, not both.")
        text, to = to, None
    if text is None:
        raise UsageError("Give TO and MSG (or --all MSG).")
    body = make_body(args.kind or (SEND_KIND if to else BROADCAST_KIND), text)
    if to is None:
        message, reached = await town.messages.broadcast(
            body, urgent=args.urgent, sender=args.sender or ctx.agent_id
        )
        if ctx.json:
            ctx.out.json({**record(message), "to": "*", "recipients": reached})
        else:
            ctx.out.line(broadcast_line(message, reached))
        return 0
    message = await town.messages.send(
        to, body, urgent=args.urgent, sender=args.sender or ctx.agent_id
    )
    if ctx.json:
        ctx.out.json(record(message))
    else:
        urgent = "urgent " if args.urgent else ""
        ctx.out.line(
            f"Sent {urgent}{message.type.value} to {await ctx.name_of_one(message.recipient)}"
            f" (message {message.id[:8]})."
        )
    return 0


def broadcast_line(message: Message, reached: int) -> str:
    """What a broadcast did, and what it costs: a note no round, work a round each."""
    kind = message.type.value if message.actionable else "note"
    if not reached:
        return f"Broadcast a {kind} to no one (no live agents)."
    who = plural(reached, "agent")
    if message.actionable:
        return f"Broadcast a {kind} to {who} (each runs a round for it)."
    return (
        f"Broadcast a note to {who} (no round of its own: it rides along with each"
        " agent's next round; --task makes it work)."
    )


# -- inbox -----------------------------------------------------------------------------------


async def _message_line(ctx: Context, message: Message) -> str:
    flag = "!" if message.priority.jumps_queue else " "
    sender = await ctx.name_of(message.sender)
    return (
        f"  {flag}{clock(message.created_at)} {message.type.value:<15} from {sender}:"
        f" {clip(message.text, 90)}"
    )


async def _show_inbox(ctx: Context, agent_id: str, title: str, data: dict[str, Any]) -> None:
    queued, inflight = await ctx.need_town().messages.inbox(agent_id)
    if ctx.json:
        data[title] = {
            "id": agent_id,
            "queued": [record(m) for m in queued],
            "in_flight": [record(m) for m in inflight],
        }
        return
    ctx.out.line(f"{title}: {len(queued)} queued, {len(inflight)} in flight")
    for heading, messages in (("queued", queued), ("in flight", inflight)):
        if messages:
            ctx.out.line(f" {heading}:")
            for message in messages:
                ctx.out.line(await _message_line(ctx, message))


async def cmd_inbox(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    data: dict[str, Any] = {}
    if args.all:
        if args.agent:
            raise UsageError("Give either AGENT or --all, not both.")
        agents = await town.agents.list()
        counts = await ctx.inbox_counts(a.id for a in agents)
        busy = [a for a in agents if sum(counts[a.id])]
        for agent in busy:
            await _show_inbox(ctx, agent.id, agent.name, data)
        await _show_inbox(ctx, SUPERVISOR_ID, "supervisor", data)
        if not ctx.json and not busy:
            ctx.out.line("(no agent has messages)")
    else:
        ref = args.agent or ctx.agent_id or "supervisor"
        agent_id = await town.agents.resolve_id(ref)
        await _show_inbox(ctx, agent_id, await ctx.name_of(agent_id), data)
    if ctx.json:
        ctx.out.json(data)
    return 0


# -- events / history ------------------------------------------------------------------------


async def _agent_filter(ctx: Context, ref: str | None) -> str | None:
    return await ctx.need_town().agents.resolve_id(ref) if ref else None


async def _events_after(ctx: Context, since: str, count: int, agent: str | None) -> list[Event]:
    """Up to ``count`` events after the id ``since``, oldest first."""
    stream = ctx.need_town().store.events
    out: list[Event] = []
    while len(out) < count:
        batch = await stream.after(since)
        if not batch:
            break
        out += [e for e in batch if agent is None or e.agent == agent]
        since = batch[-1].id
    return out[:count]


async def _print_events(ctx: Context, events: list[Event], stream: bool = False) -> None:
    names = await ctx.names()
    for event in events:
        if event.agent and event.agent not in names:
            names = await ctx.names(refresh=True)  # an agent spawned meanwhile
        if stream:
            ctx.out.json_line(event_record(event, names))
        elif not ctx.json:
            ctx.out.event(event, names)  # the shared format; a repeated "mail" prints nothing
    if ctx.json and not stream:
        ctx.out.json([event_record(e, names) for e in events])


async def cmd_events(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    if args.count < 0:
        raise UsageError("-n needs a count of 0 or more.")
    agent = await _agent_filter(ctx, args.agent)
    if args.since:
        events = await _events_after(ctx, args.since, args.count, agent)
    else:
        events = await town.messages.recent_events(args.count, agent=agent) if args.count else []
    await _print_events(ctx, events, stream=ctx.json and args.follow)
    if not args.follow:
        if not events and not ctx.json:
            ctx.out.line("No events.")
        return 0
    last = events[-1].id if events else (args.since or "$")
    # Closed here, not by the garbage collector after Ctrl-C (trio's advice for async
    # generators): its connection is released while the command still runs.
    follow = cast(
        "AsyncGenerator[Event, None]", town.messages.follow_events(since=last, agent=agent)
    )
    async with contextlib.aclosing(follow) as new:
        async for event in new:
            await _print_events(ctx, [event], stream=ctx.json)
    return 0


async def cmd_history(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    agent = await _agent_filter(ctx, args.agent)
    want = max(args.count, 0)

    def wanted(event: Event) -> bool:
        return event.kind in HISTORY_KINDS and agent in (
            None,
            event.agent,
            event.fields.get("sender"),
        )

    fetch = max(want * 4, 100)
    while True:  # widen the look-back until enough entries match or the stream ends
        events = await town.messages.recent_events(fetch)
        picked = [e for e in events if wanted(e)][-want:] if want else []
        if len(picked) >= want or len(events) < fetch or fetch >= HISTORY_SCAN_LIMIT:
            break
        fetch *= 4
    await _print_events(ctx, picked)
    if not picked and not ctx.json:
        ctx.out.line("No history yet.")
    return 0
