"""The dashboard's screen: a full-screen prompt-toolkit application, drawn from a
:class:`~.model.View` (read lock-free) in the thread that runs it.

Only the rows on screen are drawn (and only their logs looked at), so a town of 1,000
agents costs what 40 cost. Keys never touch Redis: an action (interrupt, resume, close,
kill, assign) is handed to the trio side through ``submit``, which runs it through the
command line's own code and answers with :meth:`Screen.notify`.
"""

from __future__ import annotations

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

from tinytown.cli.output import duration, plural
from tinytown.model.ids import age_seconds
from tinytown.repl.top import rows as table
from tinytown.repl.top.keys import Action, Keys
from tinytown.repl.top.logtail import LogTails, LogView
from tinytown.repl.top.model import View
from tinytown.services.eventformat import cut

#: Redraws per second when nothing else asks for one (the round clocks tick).
REFRESH = 0.2
#: At most this many redraws per second, however many events arrive.
MIN_REDRAW = 0.1
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
        refresh: float = REFRESH,
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
        self.input = Buffer(multiline=False, on_text_changed=self._typed)
        self.app: Application[None] = Application(
            layout=self._layout(),
            key_bindings=self.key_bindings(leave_keys),
            style=STYLE,
            full_screen=True,
            refresh_interval=refresh,
            min_redraw_interval=MIN_REDRAW,
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
        key = (view.version, self.sort, self.needle)
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
        view = self.view()
        if not view.loaded:
            return [("class:title", f" {view.town}"), ("", " · loading…")]
        holder = view.runtime
        if holder is None:
            run = [("ansiyellow", "not running"), ("class:dim", " (start it with 'tt run')")]
        else:
            up = age_seconds(holder.started_at)
            run = [
                ("ansigreen", "running"),
                ("", f" pid {holder.pid} on {holder.host}"),
                ("", f" · up {duration(up)}" if up is not None else ""),
            ]
        agents = " ".join(f"{s.value} {n}" for s, n in view.agent_counts().items()) or "none"
        tasks = " ".join(f"{s.value} {n}" for s, n in view.tasks.items()) or "none"
        cost = view.cost()
        line1: StyleAndTextTuples = [("class:title", f" {view.town} "), ("", "· "), *run]
        if view.stale:
            line1.append(("class:error", " · Redis unreachable"))
        line2: StyleAndTextTuples = [
            ("", f" agents {len(view.rows)}: {agents} · tasks: {tasks}"),
            ("", f" · backlog {view.backlog} · {view.rounds_per_minute():g} rounds/min"),
            ("", f" · ${cost:.2f}" if cost else ""),
        ]
        if view.questions:
            line2.append(("class:question", f" · {plural(len(view.questions), 'question')}"))
        return [*line1, ("", "\n"), *line2]

    def _columns(self) -> StyleAndTextTuples:
        _, width = self._size()
        extra = f" sort: {self.sort}" + (f"  filter: {self.needle}" if self.needle else "")
        head = table.header_cells(table.layout(width))
        return [("class:columns", (head[: width - len(extra)] + extra).ljust(width)[:width])]

    def _table(self) -> StyleAndTextTuples:
        view = self.view()
        order = self.order()
        cursor, top = self._scrolled(order)
        _, width = self._size()
        columns = table.layout(width)
        hosted = view.runtime is not None
        now = time.time()
        out: StyleAndTextTuples = []
        if not order:
            hint = "no agent matches the filter" if self.needle else "no agents (tt spawn NAME)"
            return [("class:dim", f" {hint}")]
        for n, agent_id in enumerate(order[top : top + self.table_height()]):
            row = view.rows.get(agent_id)
            if row is None:
                continue
            tail = self.tails.look(self.logs / f"{row.agent.name}.log")
            values = table.cells(row, tail, hosted, now)
            chosen = top + n == cursor
            base = "class:selected " if chosen else ""
            out.append((base, "▶" if chosen else " "))
            for i, column in enumerate(columns):
                text, style = values[column.title]
                if i:
                    out.append((base, " "))
                out.append((base + style, table.fit(text, column)))
            out.append(("", "\n"))
        if out:
            out.pop()
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

    def _lines(self, lines: list[tuple[str, str]], height: int) -> StyleAndTextTuples:
        out: StyleAndTextTuples = []
        for style, text in lines[-height:] if height > 0 else []:
            out += [(style, text), ("", "\n")]
        return out[:-1]

    def _events(self) -> StyleAndTextTuples:
        return self._lines([("", e) for e in self.view().events], self._pane_height())

    def _mail(self) -> StyleAndTextTuples:
        view = self.view()
        height = self._pane_height()
        asked = [
            ("class:question", f"? {q.text}  (reply {q.text[:8]} ...)") for q in view.questions
        ]
        mail = [("class:question" if m.question else "", m.text) for m in view.mail]
        return self._lines(mail[-max(height - len(asked), 0) :] + asked, height)

    def _log(self) -> StyleAndTextTuples:
        if not self.selected:
            return []
        row = self.view().rows.get(self.selected)
        if row is None:
            return [("class:dim", " (gone)")]
        height = self._pane_height()
        lines = self.log_view.lines(self.logs / f"{row.agent.name}.log", height)
        if not lines:
            return [("class:dim", " (no log yet: it starts with the agent's first round)")]
        return self._lines(
            [("class:dim" if ln.startswith("--- ") else "", ln) for ln in lines], height
        )

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
        panes = VSplit(
            [
                Window(FormattedTextControl(self._events), wrap_lines=False),
                Window(width=1, char="│", style="class:dim"),
                Window(
                    FormattedTextControl(self._mail),
                    width=lambda: D.exact(self._size()[1] * 2 // 5),
                ),
            ],
            height=lambda: D.exact(self._pane_height()),
        )
        log = Window(FormattedTextControl(self._log), height=lambda: D.exact(self._pane_height()))
        self.table_window = Window(
            FormattedTextControl(self._table, focusable=True, show_cursor=False),
            height=lambda: D.exact(self.table_height()),
        )
        self.input_window = Window(
            BufferControl(self.input, input_processors=[BeforeInput(self._prompt)]), height=1
        )
        return Layout(
            HSplit(
                [
                    Window(FormattedTextControl(self._header), height=2),
                    Window(FormattedTextControl(self._columns), height=1),
                    self.table_window,
                    Window(FormattedTextControl(self._pane_title), height=1),
                    ConditionalContainer(log, filter=logging),
                    ConditionalContainer(panes, filter=~logging),
                    ConditionalContainer(self.input_window, filter=typing),
                    ConditionalContainer(
                        Window(FormattedTextControl(self._status), height=1, style="class:status"),
                        filter=~typing,
                    ),
                ]
            ),
            focused_element=self.table_window,
        )

    def _drawn(self, app: Application[Any]) -> None:
        self.frames += 1

    def run(self) -> None:
        """Show the dashboard until a leave key (blocking: run it in a thread)."""
        # No "Press ENTER" handler of its own: it would read the keyboard after an error.
        self.app.run(handle_sigint=False, set_exception_handler=False)
