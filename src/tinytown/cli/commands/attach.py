"""``tt attach``: open the interactive console (the REPL) on a town from this terminal.

The console itself is not part of the CLI: it comes in through ``ctx.interactive`` (see
:mod:`tinytown.cli.interactive`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tinytown.cli.context import Context, UsageError
from tinytown.errors import TinytownError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "attach",
        help="open the interactive console (REPL) on the town from this terminal",
        description=(
            "Open the REPL on the town, running or not: every tt command without 'tt',\n"
            "plus broadcast, watch and help; Tab completion, history in .tt/repl_history,\n"
            "a toolbar with agent counts, events and supervisor mail shown as they happen.\n"
            "Ctrl-C cancels a command, Ctrl-D leaves (the town keeps running)."
        ),
    )
    p.set_defaults(handler=cmd_attach, town="none")


async def cmd_attach(ctx: Context, args: argparse.Namespace) -> int:
    """Runs until the user leaves the REPL; cancellation closes it and restores the terminal."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(
            "tt attach needs an interactive terminal; in scripts, run each command as 'tt …'."
        )
    if ctx.interactive is None:
        raise TinytownError("This program has no interactive console; run 'tt attach' instead.")
    await ctx.interactive.attach(ctx.root())
    return 0
