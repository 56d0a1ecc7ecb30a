"""The interactive console, as the command line sees it: a slot the program fills.

The REPL is built on the CLI (it parses and runs the very ``tt`` commands), so the CLI
cannot import it. ``tt attach``, ``tt top`` and ``tt run`` in a terminal reach it through
this protocol instead: :mod:`tinytown.entry`, the program above both front ends, hands the REPL
to :func:`tinytown.cli.main.main`, which puts it in every command's context.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import trio


class Interactive(Protocol):
    """An interactive console on a town."""

    async def attach(self, root: Path) -> None:
        """Open the console on the town at ``root`` (running or not) until the user leaves.

        Cancellation closes the console (restoring the terminal) and propagates.
        """

    async def host(self, root: Path) -> None:
        """Run the town at ``root`` in this process with the console in the foreground;
        return once the user leaves and the town has shut down.

        Cancellation stops the console and the town at once, then propagates.
        """

    async def top(self, root: Path, *, done: trio.Event | None = None) -> None:
        """Open the live dashboard on the town at ``root`` until the user leaves (the
        town keeps running) or ``done`` is set (``tt demo`` closes it when it is over).

        Cancellation closes the dashboard (restoring the terminal) and propagates.
        """
