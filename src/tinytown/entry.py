"""The ``tt`` program: the command line, with the REPL as its interactive console.

This module sits above both front ends. The REPL (:mod:`tinytown.repl`) is built on the
CLI (:mod:`tinytown.cli`), which therefore never imports it; here the two are put
together: the REPL is handed to the CLI for ``tt attach`` and ``tt run`` in a terminal.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import trio


class _Deferred(types.ModuleType):
    """A stand-in for a module not imported yet: ``import name`` binds it at no cost;
    the first attribute looked up on it imports the real module (into ``sys.modules``)
    and copies its namespace here, so later look-ups are plain attribute reads.

    (:class:`importlib.util.LazyLoader` is not enough: the ``import`` statement itself
    reads ``__spec__`` of a module found in ``sys.modules``, which loads it.)"""

    def __getattr__(self, attr: str) -> Any:
        with _loading:
            if self.__dict__.get("_deferred_loaded") is None:
                del sys.modules[self.__name__]
                real = importlib.import_module(self.__name__)
                self.__dict__.update(real.__dict__)
                self.__dict__["_deferred_loaded"] = real
        return getattr(self.__dict__["_deferred_loaded"], attr)


_loading = threading.RLock()


def defer_import(name: str) -> None:
    """Make ``import name`` free until the module is used (see :class:`_Deferred`).

    For trio, whose import (~150 ms here) costs more than a one-shot command's work:
    ``tt send`` never touches it (outside trio the store uses blocking sockets, and
    store/oneshot.py drives the command without an event loop), ``tt run`` does at once.
    No-op when the module is already imported or cannot be found."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = _Deferred(name)
    stand_in.__spec__ = spec
    sys.modules[name] = stand_in


defer_import("trio")

from tinytown.cli.main import main as run_cli  # noqa: E402  (after the deferral)


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
