"""The ``tt`` program: the command line, with the REPL as its interactive console.

This module sits above both front ends. The REPL (:mod:`tinytown.repl`) is built on the
CLI (:mod:`tinytown.cli`), which therefore never imports it; here the two are put
together: the REPL is handed to the CLI for ``tt attach`` and ``tt run`` in a terminal.
"""

from __future__ import annotations

import sys

# Not typing's: this module is the `tt` program's first import (typing: ~6 ms).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

    import trio


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
    """``tt``: run one command line and return its exit code.

    The program itself (``argv`` None: the command line is ``sys.argv``) first offers the
    command to the town's command server (:mod:`tinytown.launcher`), which runs this same
    function in a process that has imported everything already; a call with ``argv``
    always runs here."""
    if argv is None:
        from tinytown import launcher

        try:
            served = launcher.run(sys.argv[1:])
        except launcher.LauncherError as exc:
            sys.stderr.write(f"tt: {exc} ({launcher.MODE_ENV}=require).\n")
            return 1
        if served is not None:
            return served
    from tinytown.deferral import defer_import

    defer_import("trio")
    from tinytown.cli.main import main as run_cli  # after the deferral

    return run_cli(argv, interactive=TerminalConsole())
