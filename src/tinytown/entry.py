"""The ``tt`` program: the command line, with the REPL as its interactive console.

This module sits above both front ends. The REPL (:mod:`tinytown.repl`) is built on the
CLI (:mod:`tinytown.cli`), which therefore never imports it; here the two are put
together: the REPL is handed to the CLI for ``tt attach`` and ``tt run`` in a terminal.
"""

from __future__ import annotations

from tinytown.cli.main import main as run_cli
from tinytown.repl.app import TerminalConsole


def main(argv: list[str] | None = None) -> int:
    """``tt``: run one command line and return its exit code."""
    return run_cli(argv, interactive=TerminalConsole())
