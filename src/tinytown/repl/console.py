"""Printing above the prompt, from any thread, and the ``Output`` the REPL's commands get.

The prompt runs in its own thread with its own asyncio loop (see :mod:`.session`). While
it is on screen, text must not be written straight to the terminal: it has to be handed to
the prompt's loop, which erases the prompt, prints, and draws the prompt again below
(prompt-toolkit's ``run_in_terminal``). When no prompt is on screen (a command is running),
text is written directly. :class:`Console` makes that choice for every line, under a lock,
and batches bursts of lines into one repaint. While another full-screen application owns
the terminal (the dashboard), :meth:`Console.hold` keeps lines back until it is gone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO, cast

from prompt_toolkit.application import Application, get_app_session, run_in_terminal
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.output import Output as PtOutput
from prompt_toolkit.shortcuts import print_formatted_text

from tinytown.cli.output import Output, one_line

#: Styles of the kinds of lines the REPL prints.
STYLES = {"": "", "error": "ansired", "warning": "ansiyellow", "event": "ansicyan", "dim": "#888"}


class Console:
    """Thread-safe printing above the prompt. ``on_line`` (tests) sees every line printed."""

    def __init__(
        self, output: PtOutput | None = None, *, on_line: Callable[[str], None] | None = None
    ) -> None:
        self.output = output or get_app_session().output  # the terminal, shared
        self.on_line = on_line
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str]] = []
        self._scheduled = False  # a print is queued on the prompt's loop
        self._holds = 0  # hold() calls in force: lines wait in _pending
        self._app: Application[Any] | None = None

    # -- called by the prompt thread ------------------------------------------------------

    def attach_app(self, app: Application[Any] | None) -> None:
        """The application whose loop prints for us (None when the prompt is gone)."""
        with self._lock:
            self._app = app
        if app is None:
            self._drain()  # anything scheduled on a loop that has just finished

    # -- callable from any thread ---------------------------------------------------------

    def print(self, text: str, style: str = "") -> None:
        """Print ``text`` (one or more lines) in the given style (a key of :data:`STYLES`)."""
        if self.on_line:
            for line in text.splitlines() or [""]:
                self.on_line(line)
        with self._lock:
            self._pending.append((STYLES.get(style, style), text))
        self._flush()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep every line printed meanwhile (from any thread) off the terminal, then print
        them, in order, when the block is left (above the prompt if one is on screen by
        then). For the time another application owns the screen (the dashboard): a line
        written straight to the terminal would land on its drawing. Holds nest."""
        with self._lock:
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
            self._flush()

    def _flush(self) -> None:
        """Print what is pending, unless held or already queued on the prompt's loop:
        through that loop while a prompt is on screen, else directly."""
        with self._lock:
            if self._holds or self._scheduled or not self._pending:
                return
            app = self._app
            loop = app.loop if app is not None and app.is_running else None
            if loop is not None and app is not None:
                try:
                    loop.call_soon_threadsafe(self._print_in_app, context=app.context)
                except RuntimeError:  # the loop closed meanwhile: print directly
                    pass
                else:
                    self._scheduled = True
                    return
        self._drain()

    def invalidate(self) -> None:
        """Ask the prompt (if one is on screen) to redraw, e.g. its toolbar."""
        app = self._app
        loop = app.loop if app is not None and app.is_running else None
        if loop is not None and app is not None:
            try:
                loop.call_soon_threadsafe(app.invalidate)
            except RuntimeError:
                pass

    # -- internals ------------------------------------------------------------------------

    def _print_in_app(self) -> None:
        run_in_terminal(self._drain, in_executor=False)

    def _drain(self) -> None:
        with self._lock:
            self._scheduled = False
            if self._holds:  # held since it was queued: hold() prints it when released
                return
            pending, self._pending = self._pending, []
            if not pending:
                return
            fragments: list[tuple[str, str]] = []
            for style, text in pending:
                fragments += [(style, text), ("", "\n")]
            try:
                print_formatted_text(FormattedText(fragments), end="", output=self.output)
            except (OSError, ValueError):
                pass  # the terminal went away; nothing sensible to do with the text


class ConsoleStream:
    """A minimal text file that prints whole lines through a :class:`Console`."""

    def __init__(self, console: Console, style: str = "") -> None:
        self.console = console
        self.style = style
        self._buffer = ""

    def write(self, data: str) -> int:
        self._buffer += data
        if "\n" in self._buffer:
            complete, self._buffer = self._buffer.rsplit("\n", 1)
            self.console.print(complete, self.style)
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            text, self._buffer = self._buffer, ""
            self.console.print(text, self.style)

    def isatty(self) -> bool:
        return False


class ReplOutput(Output):
    """The :class:`~tinytown.cli.output.Output` of commands run in the REPL.

    Results go above the prompt; warnings and errors are one line each, without the
    ``tt:`` prefix of the shell (``warning: …``, ``error: …``).
    """

    def __init__(self, console: Console) -> None:
        stdout, stderr = ConsoleStream(console), ConsoleStream(console, "warning")
        super().__init__(cast(TextIO, stdout), cast(TextIO, stderr))
        self.console = console

    def line(self, text: str = "") -> None:
        self.console.print(text)

    def warn(self, text: str) -> None:
        self.console.print(f"warning: {one_line(text)}", "warning")

    def error(self, text: str) -> None:
        self.console.print(f"error: {one_line(text)}", "error")
