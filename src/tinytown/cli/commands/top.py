"""``tt top``: the live dashboard on a town, from this terminal (the town keeps running).

The dashboard is not part of the CLI (it is built on the REPL's terminal machinery): it
comes in through ``ctx.interactive`` (see :mod:`tinytown.cli.interactive`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tinytown.cli.context import Context, UsageError
from tinytown.errors import TinytownError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "top",
        help="open the live dashboard on the town (agents, tasks, events, mail)",
        description=(
            "A full-screen view of the town, live: a header (runtime, agents and tasks by\n"
            "state, backlog, rounds per minute, cost), one row per agent (state, task, time\n"
            "in the round, its CLI's latest output line, inbox, rounds, tasks done), recent\n"
            "events, supervisor mail and questions. Keys: arrows select, i/r/c/k interrupt,\n"
            "resume, close, kill (asks first), enter the agent's log live, a assigns a task,\n"
            "/ filters, s sorts, q leaves (the town keeps running). In 'tt run' or\n"
            "'tt attach', F2 switches between the REPL and the dashboard."
        ),
    )
    p.set_defaults(handler=cmd_top, town="none")


async def cmd_top(ctx: Context, args: argparse.Namespace) -> int:
    """Runs until the user leaves; cancellation closes it and restores the terminal."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "tt top needs an interactive terminal; in scripts, use 'tt status' or 'tt events -f'."
        )
    top = getattr(ctx.interactive, "top", None)
    if top is None:
        raise TinytownError("This program has no dashboard; run 'tt top' instead.")
    await top(ctx.root())
    return 0
