"""``tt reply``: answer a question an agent asked the supervisor (or list those waiting)."""

from __future__ import annotations

import argparse
from typing import Any

from tinytown.cli.context import Context, UsageError
from tinytown.cli.output import add_json_flag, ago, clip, record


def register(sub: Any) -> None:
    p = sub.add_parser(
        "reply",
        help="answer a question an agent asked (alone: list the questions waiting)",
        usage="tt reply [--from AGENT] [MESSAGE_ID TEXT]",
        description=(
            "Answer a message the supervisor received, usually a question ('tt send\n"
            "supervisor --query ...'): the asker gets an informational message whose\n"
            "correlation id is the question's id, delivered like 'tt send'. MESSAGE_ID is\n"
            "the question's id or 4 or more of its first hex digits ('tt status' and the\n"
            "REPL show them). Without arguments, list the questions nobody has answered."
        ),
    )
    p.add_argument("message_id", nargs="?", metavar="MESSAGE_ID", help="the question's id")
    p.add_argument("text", nargs="?", metavar="TEXT", help="the answer")
    p.add_argument(
        "--from",
        dest="sender",
        metavar="AGENT",
        help="sender (default: TT_AGENT_ID, else the supervisor)",
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_reply, town="required")


async def cmd_reply(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    if args.message_id is None:
        waiting = await town.messages.questions_waiting()
        if ctx.json:
            ctx.out.json([record(m) for m in waiting])
            return 0
        if not waiting:
            ctx.out.line("No questions waiting.")
            return 0
        for msg in waiting:
            ctx.out.line(
                f"{msg.id[:8]}  {ago(msg.created_at)}  from {await ctx.name_of(msg.sender)}:"
                f" {clip(msg.text, 90)}"
            )
        ctx.out.line('Answer with: tt reply ID "text"')
        return 0
    if args.text is None:
        raise UsageError('Give the answer too: tt reply MESSAGE_ID "text".')
    message = await town.messages.reply(
        args.message_id, args.text, sender=args.sender or ctx.agent_id
    )
    if ctx.json:
        ctx.out.json(record(message))
        return 0
    ctx.out.line(
        f"Replied to {await ctx.name_of(message.recipient)} (question"
        f" {message.correlation_id[:8] if message.correlation_id else '?'},"
        f" message {message.id[:8]})."
    )
    return 0
