"""The dashboard's screen: a full-screen prompt-toolkit application, drawn from a
:class:`~.model.View` (read lock-free) in the thread that runs it.

Only the rows on screen are drawn (and only their logs looked at), so a town of 1,000
agents costs what 40 cost. Keys never touch Redis: an action (interrupt, resume, close,
kill, assign) is handed to the trio side through ``submit``, which runs it through the
command line's own code and answers with :meth:`Screen.notify`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prompt_toolkit.application import Application
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.input import Input
from prompt_toolkit.layout import (
    ConditionalContainer,
    D,
    FormattedTextControl,
    HSplit,
    Layout,
    VSplit,
    Window,
)
from prompt_toolkit.layout.controls import BufferControl
from prompt_toolkit.layout.processors import BeforeInput
from prompt_toolkit.output import Output as PtOutput
from prompt_toolkit.styles import Style

from tinytown.repl.top import rows as table
from tinytown.repl.top.canvas import Canvas, one_line
from tinytown.repl.top.keys import Action, Keys
from tinytown.repl.top.logtail import LogTails, LogView
from tinytown.repl.top.view import Row, View
from tinytown.services.eventformat import cut

#: Seconds between two looks at the logs on screen and the clocks (a redraw follows
#: only if one changed).
WATCH_INTERVAL = 0.2
#: At least this many seconds between two redraws, however many changes arrive: a
#: busy town is drawn 5 times a second (a little under 1/5 s: drawing takes time too).
MIN_REDRAW = 0.18
#: Keys that leave (the town keeps running).
LEAVE_KEYS = ("q", "c-c")
HINTS = (
    "↑↓ select  enter log  i interrupt  r resume  c close  k kill  a assign"
    "  / filter  s sort  q leave"
)
STYLE = Style.from_dict(
    {
        "title": "bold",
        "columns": "reverse",
        "selected": "reverse",
        "pane-title": "bold underline",
        "dim": "#888888",
        "question": "ansiyellow",
        "error": "ansired",
        "note": "ansicyan",
        "status": "bg:#222222 #dddddd",
    }
)


class Screen(Keys):
    """The dashboard's application. ``view`` returns the latest view; ``submit`` hands an
    :class:`Action` to the trio side (thread-safe); ``root`` is the town's directory (for
    the agents' logs). ``input``/``output``: for tests (default: the terminal)."""

    def __init__(
        self,
        view: Callable[[], View],
        root: Path,
        submit: Callable[[Action], None],
        *,
        input: Input | None = None,
        output: PtOutput | None = None,
        leave_keys: tuple[str, ...] = LEAVE_KEYS,
        min_redraw: float = MIN_REDRAW,
    ) -> None:
        self.view = view
        self.logs = root / ".tt" / "logs"
        self.submit = submit
        self.tails = LogTails()
        self.log_view = LogView()
        self.sort = table.SORTS[0]
        self.needle = ""
        self.selected: str | None = None
        self.top = 0  # index of the first row on screen
        self.mode = "table"  # table | filter | assign | confirm
        self.log_open = False
        self.message: tuple[str, str] = ("", "")
        self.pending: Action | None = None  # the kill waiting for its 'y'
        self._order: list[str] = []
        self._order_key: tuple[int, str, str] | None = None
        self.frames = 0  # frames drawn (tests, measurements)
        self._lines: dict[str, tuple[tuple[object, ...], Row, StyleAndTextTuples]] = {}
        self._watched: list[Path] = []  # the logs of the rows on screen
        self._log_path: Path | None = None  # the log in the log pane
        self._clocks = False  # a round clock is on screen
        self._second = 0
        self.input = Buffer(multiline=False, on_text_changed=self._typed)
        self.app: Application[None] = Application(
            layout=self._layout(),
            key_bindings=self.key_bindings(leave_keys),
            style=STYLE,
            full_screen=True,
            min_redraw_interval=min_redraw,
            input=input,
            output=output,
            after_render=self._drawn,
        )

    # -- called from any thread -----------------------------------------------------------

    def invalidate(self) -> None:
        """Redraw soon (thread-safe; nothing happens when the screen is not running)."""
        loop = self.app.loop
        if loop is not None and self.app.is_running:
            try:
                loop.call_soon_threadsafe(self.app.invalidate)
            except RuntimeError:
                pass  # its loop has just closed

    def notify(self, text: str, style: str = "note") -> None:
        """Show ``text`` in the status line (thread-safe)."""
        self.message = (text, style)
        self.invalidate()

    def exit(self) -> None:
        """Leave (thread-safe)."""
        loop = self.app.loop
        if loop is None or not self.app.is_running:
            return

        def leave() -> None:
            if self.app.is_running and self.app.future is not None and not self.app.future.done():
                self.app.exit()

        try:
            loop.call_soon_threadsafe(leave)
        except RuntimeError:
            pass

    # -- what is shown --------------------------------------------------------------------

    def order(self) -> list[str]:
        """The ids shown, in order (recomputed only when the view, sort or filter change)."""
        view = self.view()
        # The town's own order changes only when agents come or go.
        changes = view.members if self.sort == "town" and not self.needle else view.version
        key = (changes, self.sort, self.needle)
        if key != self._order_key:
            self._order = table.ordered(view, self.sort, self.needle)
            self._order_key = key
        return self._order

    def _size(self) -> tuple[int, int]:
        size = self.app.output.get_size()
        return size.rows, size.columns

    def _pane_height(self) -> int:
        rows, _ = self._size()
        if self.log_open:
            return max(rows // 2, 5)
        return min(10, max(rows // 4, 3))

    def table_height(self) -> int:
        """Rows of agents that fit: the screen less the header (2), column titles (1),
        pane title and panes, and the status line."""
        rows, _ = self._size()
        return max(rows - 2 - 1 - 1 - self._pane_height() - 1, 1)

    def _cursor(self, order: list[str]) -> int:
        """Index of the selected agent in ``order`` (selecting the first if it is gone)."""
        if not order:
            self.selected = None
            return 0
        try:
            return order.index(self.selected) if self.selected else 0
        except ValueError:
            return min(self.top, len(order) - 1)

    def _scrolled(self, order: list[str]) -> tuple[int, int]:
        """The cursor and the first row shown, keeping the cursor on screen."""
        cursor = self._cursor(order)
        if order:
            self.selected = order[cursor]
        height = self.table_height()
        if cursor < self.top:
            self.top = cursor
        elif cursor >= self.top + height:
            self.top = cursor - height + 1
        self.top = max(min(self.top, max(len(order) - height, 0)), 0)
        return cursor, self.top

    def _header(self) -> StyleAndTextTuples:
        return table.header(self.view())

    def _columns(self) -> StyleAndTextTuples:
        _, width = self._size()
        extra = f" sort: {self.sort}" + (f"  filter: {self.needle}" if self.needle else "")
        head = table.header_cells(table.layout(width))  # (reversed: the full width)
        return [("class:columns", (head[: width - len(extra)] + extra).ljust(width)[:width])]

    def _table(self, width: int, height: int) -> list[StyleAndTextTuples]:
        view = self.view()
        order = self.order()
        cursor, top = self._scrolled(order)
        columns = table.layout(width)
        hosted = view.runtime is not None
        now = time.time()
        out: list[StyleAndTextTuples] = []
        logs: list[Path] = []
        clocks = False
        if not order:
            hint = "no agent matches the filter" if self.needle else "no agents (tt spawn NAME)"
            return [[("class:dim", f" {hint}")]]
        for n, agent_id in enumerate(order[top : top + height]):
            row = view.rows.get(agent_id)
            if row is None:
                continue
            path = self.logs / f"{row.agent.name}.log"
            logs.append(path)
            tail = self.tails.look(path)
            clocks = clocks or (tail.in_round and not row.agent.state.terminal)
            chosen = top + n == cursor
            # A row is formatted again only when it changed (or its clock ticked).
            key = (id(row), tail, chosen, width, hosted, int(now) if tail.in_round else 0)
            kept = self._lines.get(agent_id)
            if kept is not None and kept[0] == key:
                out.append(kept[2])
                continue
            line = table.row_line(row, tail, hosted, now, columns, chosen)
            self._lines[agent_id] = (key, row, line)  # (the row is kept: its id stays its own)
            out.append(line)
        if len(self._lines) > 4 * max(height, 1):
            shown = set(order[top : top + height])
            self._lines = {i: v for i, v in self._lines.items() if i in shown}
        self._watched, self._clocks = logs, clocks
        return out

    def _pane_title(self) -> StyleAndTextTuples:
        _, width = self._size()
        if self.log_open and self.selected:
            row = self.view().rows.get(self.selected)
            name = row.agent.name if row else "?"
            title = f" log of {name} (.tt/logs/{name}.log, live; enter closes)"
        else:
            half = width * 3 // 5
            title = " events".ljust(half) + " supervisor mail and questions"
        return [("class:pane-title", title.ljust(width)[:width])]

    def _events(self, width: int, height: int) -> list[StyleAndTextTuples]:
        return [[("", e)] for e in self.view().events[-height:]] if height > 0 else []

    def _mail(self, width: int, height: int) -> list[StyleAndTextTuples]:
        view = self.view()
        asked = [("class:question", f"? {q.text}") for q in view.questions]
        mail = [("class:question" if m.question else "", m.text) for m in view.mail]
        lines = mail[-max(height - len(asked), 0) :] + asked
        return [[line] for line in lines[-height:]] if height > 0 else []

    def _log(self, width: int, height: int) -> list[StyleAndTextTuples]:
        row = self.view().rows.get(self.selected or "")
        if row is None:
            return [[("class:dim", " (gone)")]]
        path = self.logs / f"{row.agent.name}.log"
        self._log_path = path
        lines = self.log_view.lines(path, height)
        if not lines:
            return [[("class:dim", " (no log yet: it starts with the agent's first round)")]]
        return [[("class:dim" if ln.startswith("--- ") else "", ln)] for ln in lines]

    def _status(self) -> StyleAndTextTuples:
        text, style = self.message
        if self.mode == "confirm" and self.pending is not None:
            return [
                ("class:error", f" kill {self.pending.label}? y kills it, any other key keeps it")
            ]
        if text:
            return [(f"class:{style}" if style else "", f" {cut(text, 200)}")]
        return [("class:dim", f" {HINTS}")]

    def _prompt(self) -> str:
        if self.mode == "filter":
            return " filter (enter keeps, esc clears): "
        if self.mode == "assign" and self.pending is not None:
            return f" assign to {self.pending.label}: "
        return " "

    # -- layout and keys ------------------------------------------------------------------

    def _layout(self) -> Layout:
        typing = Condition(lambda: self.mode in ("filter", "assign"))
        logging = Condition(lambda: self.log_open)
        # Exact sizes everywhere: prompt-toolkit shares out free space a cell at a time.
        mail_width = lambda: self._size()[1] * 2 // 5  # noqa: E731
        panes = VSplit(
            [
                Canvas(self._events, width=lambda: self._size()[1] - mail_width() - 1),
                Window(width=1, char="│", style="class:dim"),
                Canvas(self._mail, width=mail_width),
            ],
            height=lambda: D.exact(self._pane_height()),
        )
        # The header takes the focus when nothing is typed (the keys are global).
        self.home_window = Window(
            FormattedTextControl(self._header, focusable=True, show_cursor=False), height=2
        )
        self.input_window = Window(
            BufferControl(self.input, input_processors=[BeforeInput(self._prompt)]), height=1
        )
        return Layout(
            HSplit(
                [
                    self.home_window,
                    Canvas(one_line(self._columns), lambda: 1),
                    Canvas(self._table, self.table_height),
                    Canvas(one_line(self._pane_title), lambda: 1),
                    ConditionalContainer(Canvas(self._log, self._pane_height), filter=logging),
                    ConditionalContainer(panes, filter=~logging),
                    ConditionalContainer(self.input_window, filter=typing),
                    ConditionalContainer(
                        Canvas(one_line(self._status, "class:status"), lambda: 1),
                        filter=~typing,
                    ),
                ]
            ),
            focused_element=self.home_window,
        )

    # -- when to draw ---------------------------------------------------------------------

    async def _watch(self) -> None:
        """Redraw when what the view cannot announce changed: a log on screen grew, or a
        second passed while a clock is shown (uptime, time in the round). Changes of the
        town itself come through :meth:`invalidate`."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            second = int(time.time())
            ticked = second != self._second and (self._clocks or self.view().runtime is not None)
            logs = [*self._watched, *([self._log_path] if self.log_open else [])]
            if ticked or any(self.tails.changed(p) for p in logs):
                self._second = second
                self.app.invalidate()

    def _drawn(self, app: Application[Any]) -> None:
        self.frames += 1

    def run(self) -> None:
        """Show the dashboard until a leave key (blocking: run it in a thread)."""

        def watch() -> None:
            self.app.create_background_task(self._watch())

        # No "Press ENTER" handler of its own: it would read the keyboard after an error.
        self.app.run(pre_run=watch, handle_sigint=False, set_exception_handler=False)
