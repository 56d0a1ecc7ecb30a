"""The prompt, read in a worker thread so that prompt-toolkit's asyncio loop never meets trio.

prompt-toolkit runs on asyncio; the town runs on trio; one thread cannot host both loops.
So each line is read by ``PromptSession.prompt()`` in a worker thread
(``trio.to_thread.run_sync``): it starts a private asyncio loop there, shows the prompt and
the toolbar, and returns the line. The trio side then runs the command natively, with no
prompt on screen. The prompt thread touches nothing of trio's; the trio side reaches into
the prompt only through thread-safe calls (``loop.call_soon_threadsafe``) made by
:class:`~tinytown.repl.console.Console` and :meth:`PromptReader.stop`.
"""

from __future__ import annotations

import enum
import threading
from pathlib import Path
from typing import Any

import trio
from prompt_toolkit import PromptSession
from prompt_toolkit.completion import Completer
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import Output as PtOutput

from tinytown.repl.console import Console

#: How long leaving waits for the prompt thread to take its prompt off the screen.
STOP_TIMEOUT = 2.0


class Key(enum.Enum):
    """What came back instead of a line."""

    INTERRUPT = "ctrl-c"  # the line was abandoned; prompt again
    EOF = "ctrl-d"  # leave the REPL


def history_for(root: Path) -> History:
    """``<town>/.tt/repl_history`` (created private), or an in-memory history if unwritable."""
    directory = root / ".tt"
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / "repl_history"
        path.touch(mode=0o600, exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


def key_bindings() -> KeyBindings:
    """The REPL's own keys: Ctrl-Z does nothing (suspending would stop the whole process,
    the town's runtime included; without this binding it would insert a ``^Z``)."""
    bindings = KeyBindings()

    @bindings.add("c-z")
    def _ignore(event: KeyPressEvent) -> None:
        pass

    return bindings


class PromptReader:
    """Reads lines with a prompt-toolkit session, one worker-thread call per line."""

    def __init__(
        self,
        console: Console,
        *,
        message: str,
        completer: Completer,
        toolbar: Any,
        history: History,
        input: Input | None = None,
        output: PtOutput | None = None,
    ) -> None:
        self.console = console
        self.session: PromptSession[str] = PromptSession(
            message,
            completer=completer,
            complete_while_typing=False,
            bottom_toolbar=toolbar,
            history=history,
            input=input,
            output=output or console.output,
            enable_suspend=False,  # Ctrl-Z would stop the whole process, runtime included
            key_bindings=key_bindings(),  # ... and is ignored rather than typed
        )

    async def read(self) -> str | Key:
        """The next line, or :attr:`Key.INTERRUPT` (Ctrl-C) or :attr:`Key.EOF` (Ctrl-D).

        Cancellation: the prompt is taken off the screen (its terminal settings restored)
        within :data:`STOP_TIMEOUT` seconds, then ``Cancelled`` propagates.
        """
        finished = threading.Event()

        def work() -> str | Key:
            try:
                return self._prompt_once()
            finally:
                finished.set()

        try:
            return await trio.to_thread.run_sync(work, abandon_on_cancel=True)
        except trio.Cancelled:
            await self._stop(finished)
            raise

    def _prompt_once(self) -> str | Key:
        """In the prompt thread: show the prompt until Enter, Ctrl-C or Ctrl-D."""
        app = self.session.app
        try:
            return self.session.prompt(pre_run=lambda: self.console.attach_app(app))
        except KeyboardInterrupt:
            return Key.INTERRUPT
        except EOFError:
            return Key.EOF
        finally:
            self.console.attach_app(None)

    def redraw(self) -> None:
        """Redraw the prompt (e.g. after the toolbar's data changed). Thread-safe."""
        self.console.invalidate()

    async def _stop(self, finished: threading.Event) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT):
            while not finished.is_set():
                self._request_exit()
                await trio.sleep(0.02)

    def _request_exit(self) -> None:
        app = self.session.app
        loop = app.loop
        if loop is None or not app.is_running:
            return

        def leave() -> None:
            if app.is_running and app.future is not None and not app.future.done():
                app.exit(exception=EOFError())

        try:
            loop.call_soon_threadsafe(leave)
        except RuntimeError:
            pass  # the loop has just closed: the prompt is gone anyway
