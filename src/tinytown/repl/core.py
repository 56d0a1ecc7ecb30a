"""The REPL: read a line in the prompt thread, run it on the trio side, print, repeat.

Commands go through the very parser of ``tt`` (plus the REPL's own commands) and the same
``run_command`` as the shell, with an :class:`~tinytown.repl.console.ReplOutput`, so they
behave as in the shell. Each command runs in its own cancel scope: Ctrl-C cancels it.

Why Ctrl-C arrives as SIGINT: while a command runs, no prompt is on screen and the terminal
is back in its normal (cooked) mode, so the terminal turns Ctrl-C into SIGINT for the
foreground process group. Python delivers signals to the main thread, which is trio's; the
REPL receives them there (``trio.open_signal_receiver``) and cancels the running command's
scope. At the prompt the terminal is in raw mode, Ctrl-C is a key, and prompt-toolkit
raises ``KeyboardInterrupt`` in the prompt thread, which just abandons the line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import io
import re
import shlex
import signal
import sys
import threading
import traceback
from contextlib import redirect_stderr, redirect_stdout

import trio
from prompt_toolkit.history import History
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output as PtOutput

from tinytown.cli.main import run_command
from tinytown.cli.parser import build_parser, command_parsers
from tinytown.errors import TinytownError
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.repl import commands
from tinytown.repl.completer import ReplCompleter
from tinytown.repl.console import Console, ReplOutput
from tinytown.repl.feed import Feed
from tinytown.repl.session import Key, PromptReader, history_for
from tinytown.repl.snapshot import REFRESH_INTERVAL, SnapshotKeeper
from tinytown.repl.toolbar import make_toolbar
from tinytown.services.town import Town

_SEE_HELP = re.compile(r"\(see '(?:tt )?(.*?) ?--help'\)")


def build_repl_parser(repl: commands.ReplHooks) -> argparse.ArgumentParser:
    """The ``tt`` parser with the REPL's own commands added (a private instance, built once
    per REPL and used for every line)."""
    return build_parser([lambda sub: commands.register(sub, repl)])


class Repl:
    """An interactive console on a connected town.

    ``input``/``output`` default to the terminal; tests pass prompt-toolkit's pipe input
    and ``DummyOutput`` (and watch what is printed through ``console.on_line``).
    """

    def __init__(
        self,
        town: Town,
        *,
        console: Console | None = None,
        input: Input | None = None,
        output: PtOutput | None = None,
        history: History | None = None,
        refresh_interval: float = REFRESH_INTERVAL,
    ) -> None:
        self.town = town
        self.console = console or Console(output)
        self.out = ReplOutput(self.console)
        self.keeper = SnapshotKeeper(town, refresh_interval)
        self.feed = Feed(town, self.console, self.keeper)
        self.parser = build_repl_parser(self)
        self.reader = PromptReader(
            self.console,
            message=f"{town.name}> ",
            completer=ReplCompleter(
                self.parser, lambda: self.keeper.current, hidden=frozenset(commands.REFUSED)
            ),
            toolbar=make_toolbar(lambda: self.keeper.current),
            history=history if history is not None else history_for(town.root),
            input=input,
            output=output,
        )
        self.ready = trio.Event()  # the feed follows the stream, Ctrl-C is handled
        self._leaving = False
        self._command: trio.CancelScope | None = None

    def leave(self) -> None:
        """Stop after the current command (``exit``/``quit``)."""
        self._leaving = True

    @property
    def busy(self) -> bool:
        """Whether a command is running."""
        return self._command is not None

    def cancel_command(self) -> bool:
        """Cancel the running command, if any (what Ctrl-C does). Trio side only."""
        if self._command is None:
            return False
        self._command.cancel()
        return True

    async def run(self) -> None:
        """Read and run commands until Ctrl-D, ``exit``/``quit``, or cancellation.

        Cancellation (e.g. the town shutting down) takes the prompt off the screen, restores
        the terminal, cancels the command in progress and the background tasks, and then
        propagates.
        """
        async with trio.open_nursery() as nursery:
            await self.keeper.refresh()
            nursery.start_soon(self.keeper.run, self.reader.redraw)
            await nursery.start(self.feed.run)
            if threading.current_thread() is threading.main_thread():
                await nursery.start(self._interrupts)
            self.ready.set()
            try:
                while not self._leaving:
                    line = await self.reader.read()
                    if line is Key.EOF:
                        break
                    if isinstance(line, str):
                        await self.execute(line)
                        self.keeper.poke()
            finally:
                nursery.cancel_scope.cancel()

    async def _interrupts(self, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                if self.cancel_command() and sys.stdin.isatty():
                    self.console.print("")  # the terminal echoed ^C: end that line

    # -- one command ----------------------------------------------------------------------

    async def execute(self, line: str) -> int | None:
        """Run one command line and return its exit code (None if nothing ran).

        Usage errors and ``TinytownError`` print one ``error: …`` line; unexpected
        exceptions print one line too (the traceback goes to ``.tt/logs/repl.log``).
        Cancellation by :meth:`cancel_command` prints ``(cancelled)`` and returns 130;
        cancellation from outside propagates.
        """
        args = self.parse(line)
        if args is None:
            return None
        with trio.CancelScope() as scope:
            self._command = scope
            try:
                return await self._dispatch(args)
            except TinytownError as exc:
                self.out.error(str(exc))
                return int(getattr(exc, "exit_code", 1))
            except Exception as exc:
                self.out.error(f"internal error ({type(exc).__name__}: {exc}); {self._log(exc)}")
                return 1
            finally:
                self._command = None
        self.console.print("(cancelled)", "dim")
        return 130

    def parse(self, line: str) -> argparse.Namespace | None:
        """Parse a line with the ``tt`` parser; print help or a one-line usage error."""
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.out.error(f"Cannot read that line: {exc}.")
            return None
        if words[:1] == ["tt"]:
            words = words[1:]
        if not words:
            return None
        known = command_parsers(self.parser)
        refused = commands.refusal(words)
        if refused is not None:
            self.out.error(refused)
            return None
        if words[0] not in known and not words[0].startswith("-"):
            close = difflib.get_close_matches(words[0], list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.out.error(f"Unknown command '{words[0]}'{hint}; 'help' lists the commands.")
            return None
        stdout, stderr = io.StringIO(), io.StringIO()
        try:
            with redirect_stdout(stdout), redirect_stderr(stderr):
                args = self.parser.parse_args(words)
        except SystemExit as exc:
            if exc.code in (0, None):
                self.out.line(stdout.getvalue().rstrip())
            else:
                lines = [ln for ln in stderr.getvalue().splitlines() if ln.strip()]
                self.out.error(_usage_message(lines[-1] if lines else "invalid command line"))
            return None
        if getattr(args, "handler", None) is None:
            parser = self.parser
            for word in words:
                parser = command_parsers(parser).get(word, parser)
            verbs = ", ".join(command_parsers(parser))
            self.out.error(f"'{' '.join(words)}' needs one of: {verbs} (see 'help {words[0]}').")
            return None
        return args

    async def _dispatch(self, args: argparse.Namespace) -> int:
        other_town = getattr(args, "town_dir", None)
        if other_town is None:
            args.town_dir = str(self.town.root)
        following = bool(getattr(args, "follow", False))  # 'events --follow' prints them all
        self.feed.paused = self.feed.paused or following
        try:
            # Whoever types here is the supervisor (sends from it, reads its inbox), even in
            # a shell that an agent's round started.
            return await run_command(
                args, self.out, None if other_town else self.town, sender=SUPERVISOR_ID
            )
        finally:
            if following:
                self.feed.paused = False

    def _log(self, exc: BaseException) -> str:
        path = self.town.root / ".tt" / "logs" / "repl.log"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as fh:
                fh.write(f"--- {dt.datetime.now().isoformat()}\n")
                fh.write("".join(traceback.format_exception(exc)))
        except OSError:
            return "no log could be written"
        return f"details in {path}"


def _usage_message(line: str) -> str:
    """argparse's ``tt: msg (see 'tt spawn --help')`` as ``msg (see 'help spawn')``."""
    line = line.removeprefix("tt: ")
    return _SEE_HELP.sub(lambda m: f"(see '{f'help {m.group(1)}'.strip()}')", line)
