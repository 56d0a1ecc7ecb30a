"""The ``tt`` program: the command line, with the REPL as its interactive console.

This module sits above both front ends. The REPL (:mod:`tinytown.repl`) is built on the
CLI (:mod:`tinytown.cli`), which therefore never imports it; here the two are put
together: the REPL is handed to the CLI for ``tt attach`` and ``tt run`` in a terminal.
"""

from __future__ import annotations

from pathlib import Path

import trio

from tinytown.cli.main import main as run_cli


class TerminalConsole:
    """The REPL on this process's terminal, as the CLI's
    :class:`~tinytown.cli.interactive.Interactive` console.

    The REPL is imported when a command opens it, not before: prompt-toolkit takes longer
    to import than most commands take to run.
    """

    async def attach(self, root: Path) -> None:
        from tinytown.repl.app import attach

        await attach(root)

    async def host(self, root: Path) -> None:
        from tinytown.repl.app import run_town_with_repl

        await run_town_with_repl(root)

    async def top(self, root: Path, *, done: trio.Event | None = None) -> None:
        from tinytown.repl.top import run_dashboard

        await run_dashboard(root, done=done)


def main(argv: list[str] | None = None) -> int:
    """``tt``: run one command line and return its exit code."""
    return run_cli(argv, interactive=TerminalConsole())
