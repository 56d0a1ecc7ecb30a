"""One key between the REPL and the dashboard: F2 at the prompt (or the line ``top``)
shows the dashboard; F2 or ``q`` there comes back to the prompt.

The REPL reads each line through its ``PromptReader`` in a worker thread; the dashboard
is another prompt-toolkit application on the same terminal. So the switch sits between
the REPL's loop and its reader: F2 ends the prompt with a marker instead of a line, and
the reader shown here runs the dashboard (on the REPL's own town connection) before it
prompts again. Meanwhile the REPL's feed holds back (the dashboard shows the events)
and lines printed by the town (runtime notes) wait, to be printed once the prompt is back.
"""

from __future__ import annotations

from typing import Any

from prompt_toolkit.input import Input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent, merge_key_bindings
from prompt_toolkit.output import Output as PtOutput

from tinytown.repl.core import Repl
from tinytown.repl.session import Key, PromptReader
from tinytown.repl.top.dashboard import Dashboard
from tinytown.repl.top.screen import LEAVE_KEYS

#: The key that switches (prompt-toolkit's name).
SWITCH_KEY = "f2"
#: What the prompt returns for the key: not a line anyone can type.
SWITCH = "\x00dashboard"
#: Lines that show the dashboard too.
TOP_LINES = frozenset({"top", "tt top"})


class SwitchingReader:
    """The REPL's reader, showing the dashboard when F2 or ``top`` comes instead of a
    line. Everything else is the wrapped :class:`PromptReader`'s."""

    def __init__(
        self, repl: Repl, reader: PromptReader, input: Input | None, output: PtOutput | None
    ) -> None:
        self.repl = repl
        self.reader = reader
        self.input = input
        self.output = output
        self.shown = 0  # times the dashboard was shown (tests)
        self.board: Dashboard | None = None  # while it is shown

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)

    async def read(self) -> str | Key:
        """The next line (see :meth:`PromptReader.read`), after the dashboard if asked
        for. Cancellation: as the reader's, or the dashboard's (terminal restored)."""
        while True:
            line = await self.reader.read()
            if line != SWITCH and not (isinstance(line, str) and line.strip() in TOP_LINES):
                return line
            await self.show()

    async def show(self) -> None:
        """The dashboard on the REPL's town until F2, ``q`` or Ctrl-C."""
        feed = self.repl.feed
        paused, feed.paused = feed.paused, True
        try:
            # The console prints directly when no prompt is on screen: over the
            # dashboard that would scribble on its drawing, so lines wait for the prompt.
            with self.repl.console.hold():
                board = Dashboard(
                    self.repl.town,
                    input=self.input,
                    output=self.output or self.repl.console.output,
                    leave_keys=(*LEAVE_KEYS, SWITCH_KEY),
                )
                self.shown += 1
                self.board = board
                await board.run()
        finally:
            self.board = None
            feed.paused = paused


def add_dashboard_key(
    repl: Repl, *, input: Input | None = None, output: PtOutput | None = None
) -> SwitchingReader:
    """Give ``repl`` the switch: F2 (or the line ``top``) shows the dashboard, F2 or
    ``q`` there returns to the prompt. Call before ``repl.run()``. ``input``/``output``:
    the REPL's (tests); default the terminal."""
    if isinstance(repl.reader, SwitchingReader):
        return repl.reader
    bindings = KeyBindings()

    @bindings.add(SWITCH_KEY)
    def _switch(event: KeyPressEvent) -> None:
        event.app.exit(result=SWITCH)

    session = repl.reader.session
    session.key_bindings = (
        merge_key_bindings([session.key_bindings, bindings]) if session.key_bindings else bindings
    )
    switching = SwitchingReader(repl, repl.reader, input, output)
    repl.reader = switching  # type: ignore[assignment]
    return switching
