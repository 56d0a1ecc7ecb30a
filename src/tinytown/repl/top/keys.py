"""The dashboard's keys and what they do, as a base of the screen: browsing (arrows,
page keys, home and end), the actions (interrupt, resume, close, kill after a ``y``,
assign with a text), the log pane, sorting and filtering.

An action is only described here (an :class:`Action`) and handed to ``submit``: the
trio side runs it (docs/dashboard.md).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.filters import Condition
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.layout import Window

from tinytown.repl.top import rows as table
from tinytown.repl.top.view import View


@attrs.frozen
class Action:
    """What a key asks for, run on the trio side: ``interrupt``, ``resume``, ``close``,
    ``kill`` or ``assign`` (with ``text``) of the agent ``agent_id``."""

    verb: str
    agent_id: str
    label: str
    text: str = ""


class Keys:
    """What the keys change. The screen (a subclass) provides the view, the order of the
    rows, the table's height, the cursor and :meth:`notify`."""

    view: Callable[[], View]  # the latest view
    submit: Callable[[Action], None]
    mode: str  # table | filter | assign | confirm
    pending: Action | None  # the kill waiting for its 'y', the assignment being typed
    selected: str | None
    needle: str
    sort: str
    log_open: bool
    message: tuple[str, str]
    input: Buffer
    input_window: Window
    home_window: Window

    def order(self) -> list[str]:
        raise NotImplementedError

    def table_height(self) -> int:
        raise NotImplementedError

    def _cursor(self, order: list[str]) -> int:
        raise NotImplementedError

    def notify(self, text: str, style: str = "note") -> None:
        raise NotImplementedError

    def key_bindings(self, leave_keys: tuple[str, ...]) -> KeyBindings:
        """The dashboard's keys (``leave_keys`` leave it)."""
        keys = KeyBindings()
        browsing = Condition(lambda: self.mode == "table")
        typing = Condition(lambda: self.mode in ("filter", "assign"))
        confirming = Condition(lambda: self.mode == "confirm")

        for key in leave_keys:

            @keys.add(key, filter=browsing)
            def _leave(event: KeyPressEvent) -> None:
                event.app.exit()

        @keys.add("c-z")
        def _nothing(event: KeyPressEvent) -> None:
            pass  # suspending would stop the whole process (a 'tt run' town included)

        moves = {
            "up": -1,
            "down": 1,
            "pageup": -(10**6),
            "pagedown": 10**6,
            "home": None,
            "end": None,
        }
        for key, step in moves.items():

            def move(event: KeyPressEvent, key: str = key, step: int | None = step) -> None:
                self.move(key, step)

            keys.add(key, filter=browsing)(move)

        for key, verb in (("i", "interrupt"), ("r", "resume"), ("c", "close")):

            def act(event: KeyPressEvent, verb: str = verb) -> None:
                self._act(verb)

            keys.add(key, filter=browsing)(act)

        @keys.add("k", filter=browsing)
        def _kill(event: KeyPressEvent) -> None:
            action = self._action("kill")
            if action is not None:
                self.pending, self.mode = action, "confirm"

        @keys.add("<any>", filter=confirming)
        def _confirm(event: KeyPressEvent) -> None:
            action, self.pending, self.mode = self.pending, None, "table"
            if action is not None and event.data == "y":
                self._send(action)
            elif action is not None:
                self.notify(f"{action.label} not killed.", "dim")

        @keys.add("enter", filter=browsing)
        def _log(event: KeyPressEvent) -> None:
            self.log_open = not self.log_open and self.selected is not None

        @keys.add("escape", filter=browsing, eager=True)
        def _close(event: KeyPressEvent) -> None:
            self.log_open = False
            self.message = ("", "")

        @keys.add("s", filter=browsing)
        def _sort(event: KeyPressEvent) -> None:
            self.sort = table.SORTS[(table.SORTS.index(self.sort) + 1) % len(table.SORTS)]
            self.notify(f"sorted by {self.sort}", "dim")

        @keys.add("/", filter=browsing)
        def _filter(event: KeyPressEvent) -> None:
            self.mode = "filter"
            self.input.text = self.needle
            self.input.cursor_position = len(self.needle)
            event.app.layout.focus(self.input_window)

        @keys.add("a", filter=browsing)
        def _assign(event: KeyPressEvent) -> None:
            action = self._action("assign")
            if action is not None:
                self.pending, self.mode = action, "assign"
                self.input.text = ""
                event.app.layout.focus(self.input_window)

        @keys.add("enter", filter=typing)
        def _accept(event: KeyPressEvent) -> None:
            text = self.input.text
            if self.mode == "assign" and self.pending is not None:
                if text.strip():
                    self._send(attrs.evolve(self.pending, text=text.strip()))
                else:
                    self.notify("Nothing assigned (no text).", "dim")
            self._stop_typing(event)

        @keys.add("escape", filter=typing, eager=True)
        @keys.add("c-c", filter=typing)
        def _cancel(event: KeyPressEvent) -> None:
            if self.mode == "filter":
                self.needle = ""
            self._stop_typing(event)

        return keys

    # -- actions --------------------------------------------------------------------------

    def move(self, key: str, step: int | None) -> None:
        order = self.order()
        if not order:
            return
        cursor = self._cursor(order)
        if key == "home":
            cursor = 0
        elif key == "end":
            cursor = len(order) - 1
        elif step is not None and abs(step) > 1:  # a page
            page = max(self.table_height() - 1, 1)
            cursor += page if step > 0 else -page
        elif step is not None:
            cursor += step
        self.selected = order[max(0, min(cursor, len(order) - 1))]
        self.message = ("", "")

    def _typed(self, buffer: Buffer) -> None:
        if self.mode == "filter":
            self.needle = buffer.text.strip()

    def _stop_typing(self, event: KeyPressEvent) -> None:
        self.mode, self.pending = "table", None
        self.input.text = ""
        event.app.layout.focus(self.home_window)

    def _action(self, verb: str) -> Action | None:
        row = self.view().rows.get(self.selected or "")
        if row is None:
            self.notify("No agent selected.", "error")
            return None
        return Action(verb, row.agent.id, row.agent.label)

    def _act(self, verb: str) -> None:
        action = self._action(verb)
        if action is not None:
            self._send(action)

    def _send(self, action: Action) -> None:
        self.notify(f"{action.verb} {action.label}…", "dim")
        self.submit(action)
