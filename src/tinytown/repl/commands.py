"""Commands only the REPL has: ``broadcast``, ``watch``, ``help``, ``exit``/``quit``.

They are added to the REPL's own instance of the ``tt`` parser, so they parse, complete
and show in ``help`` exactly like the shell's commands, and their handlers have the same
shape (``async def handler(ctx, args) -> int``). What they need from the REPL comes in
through ``args.repl`` (see :class:`ReplHooks`).
"""

from __future__ import annotations

import argparse
from typing import Any, Protocol

from tinytown.cli.commands.messages import broadcast_line
from tinytown.cli.context import Context, UsageError
from tinytown.cli.output import add_json_flag, record
from tinytown.cli.parser import command_help, command_parsers
from tinytown.repl.completer import COMMAND_METAVAR
from tinytown.repl.feed import Feed, stream_tail
from tinytown.services.messages import BROADCAST_KIND, make_body

#: Commands of the REPL itself, in the order ``help`` lists them.
REPL_COMMANDS = ("broadcast", "watch", "help", "exit", "quit")

#: ``tt`` commands that make no sense inside the REPL, with the one line that refuses them.
#: ``help`` and completion leave them out. (``run --detach`` is still accepted: it starts
#: the town in the background from a ``tt attach`` session.)
REFUSED = {
    "attach": "You are in the REPL already.",
    "run": "The REPL cannot host the town; use 'tt run' in a shell, or 'run --detach' here.",
    "init": "This town exists already; run 'tt init' in a shell to make another.",
    "down": "'down' would stop the town this REPL is on; leave (Ctrl-D), then 'tt down'.",
    "mcp": "The MCP server needs the terminal's stdin or a port; run 'tt mcp' in a shell.",
}


def refusal(words: list[str]) -> str | None:
    """The line refusing a command line (its words, without ``tt``), or None if allowed."""
    if not words or words[0] not in REFUSED:
        return None
    if words[0] == "run" and "--detach" in words:
        return None
    return REFUSED[words[0]]


class ReplHooks(Protocol):
    """What the REPL commands use of the REPL."""

    parser: argparse.ArgumentParser
    feed: Feed

    def leave(self) -> None: ...


def register(sub: Any, repl: ReplHooks) -> None:
    """Add the REPL commands to the subparsers action ``sub`` of the REPL's parser."""
    p = sub.add_parser(
        "broadcast",
        help="send a message to every live agent at once",
        description=(
            "Put one message (one id) into every live agent's inbox, atomically; stopped\n"
            "agents are skipped. Words need no quotes. Like 'send --all': a note (no round of\n"
            "its own, no reply) unless --task, --query or --ack is given. The sender is the\n"
            "supervisor."
        ),
    )
    p.add_argument("words", nargs="+", metavar="MSG", help="the message text")
    kind = p.add_mutually_exclusive_group()
    for flag, help_text in (
        ("task", "work for every agent (one round each)"),
        ("query", "a question that expects an answer"),
        ("info", "an FYI (no action needed)"),
        ("ack", "a confirmation"),
    ):
        kind.add_argument(
            f"--{flag}", dest="kind", action="store_const", const=flag, help=help_text
        )
    p.add_argument("--urgent", action="store_true", help="deliver ahead of queued messages")
    add_json_flag(p)
    p.set_defaults(handler=cmd_broadcast, kind=BROADCAST_KIND, town="required", repl=repl)

    p = sub.add_parser(
        "watch",
        help="follow the town's events live until Ctrl-C",
        description=(
            "Print every event of the town as it happens ('HH:MM:SS kind agent text', as\n"
            "'events --follow' does) until Ctrl-C. The usual summary above the prompt\n"
            "pauses meanwhile."
        ),
    )
    p.add_argument("--agent", metavar="AGENT", help="only events about this agent")
    p.add_argument(
        "-n", dest="count", type=int, default=0, metavar="COUNT", help="first show COUNT recent"
    )
    p.set_defaults(handler=cmd_watch, town="required", repl=repl)

    p = sub.add_parser(
        "help",
        help="list the commands, or show one command's full help",
        description="Without COMMAND, list every command; with it, show its options.",
    )
    p.add_argument("command", nargs="*", metavar=COMMAND_METAVAR, help="e.g. 'spawn', 'task show'")
    p.set_defaults(handler=cmd_help, town="none", repl=repl)

    for name in ("exit", "quit"):
        p = sub.add_parser(name, help="leave the REPL (or press Ctrl-D)", description="Leave.")
        p.set_defaults(handler=cmd_exit, town="none", repl=repl)


async def cmd_broadcast(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    body = make_body(args.kind, " ".join(args.words))
    message, reached = await town.messages.broadcast(body, urgent=args.urgent, sender=ctx.sender)
    if ctx.json:
        ctx.out.json({**record(message), "to": "*", "recipients": reached})
    else:
        ctx.out.line(broadcast_line(message, reached))  # as 'send --all' says it
    return 0


async def cmd_watch(ctx: Context, args: argparse.Namespace) -> int:
    """Runs until cancelled (Ctrl-C in the REPL), printing every event once."""
    town = ctx.need_town()
    if args.count < 0:
        raise UsageError("-n needs a count of 0 or more.")
    agent = await town.agents.resolve_id(args.agent) if args.agent else None
    feed: Feed = args.repl.feed
    names = await ctx.names()
    recent = await town.messages.recent_events(args.count, agent=agent) if args.count else []
    for event in recent:
        ctx.out.event(event, names)
    since = recent[-1].id if recent else await stream_tail(town)
    ctx.out.line("Watching events (Ctrl-C to stop)…")
    feed.paused = True
    try:
        async for event in town.messages.follow_events(since=since, agent=agent):
            if event.agent and event.agent not in names:
                names = await ctx.names(refresh=True)
            ctx.out.event(event, names)
    finally:
        feed.paused = False
    return 0


async def cmd_help(ctx: Context, args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.repl.parser
    for word in args.command:
        child = command_parsers(parser).get(word)
        if child is None:
            raise UsageError(f"No command {' '.join(args.command)!r}; 'help' lists them.")
        parser = child
    if args.command:
        ctx.out.line(parser.format_help().rstrip())
        return 0
    entries = command_help(parser)
    width = max(len(name) for name in entries)
    ctx.out.line("Commands (as in the shell, without 'tt'):")
    for name, text in entries.items():
        if name not in REPL_COMMANDS and name not in REFUSED:
            ctx.out.line(f"  {name:<{width}}  {text}")
    ctx.out.line("REPL only:")
    for name in REPL_COMMANDS:
        if name in entries:
            ctx.out.line(f"  {name:<{width}}  {entries[name]}")
    ctx.out.line(
        "Keys: Tab completes, Up/Down recall history, Ctrl-C cancels the running command"
        " (or clears the line), Ctrl-D leaves. 'help COMMAND' shows a command's options."
    )
    return 0


async def cmd_exit(ctx: Context, args: argparse.Namespace) -> int:
    args.repl.leave()
    return 0
