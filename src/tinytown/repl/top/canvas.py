"""A container that writes lines of styled text straight into prompt-toolkit's screen.

prompt-toolkit's ``Window`` is general (wrapping, scrolling, cursors, margins) and costs
several microseconds per cell; the dashboard's table and panes cover most of a large
terminal and are drawn up to five times a second. This container only places
characters (wide ones taking two cells), and keeps the cells of the lines it drew
lately: most lines are the same from one frame to the next (docs/dashboard.md).
"""

from __future__ import annotations

from collections.abc import Callable

from prompt_toolkit.formatted_text import StyleAndTextTuples
from prompt_toolkit.layout import Container, Dimension
from prompt_toolkit.layout.mouse_handlers import MouseHandlers
from prompt_toolkit.layout.screen import _CHAR_CACHE, Char, Screen, WritePosition

#: Lines whose cells are kept for the next frames (most lines do not change).
CACHE_LINES = 2000
#: ``lines(width, height)``: at most ``height`` lines, each a list of fragments.
Lines = Callable[[int, int], list[StyleAndTextTuples]]


class Canvas(Container):
    """Draws ``lines(width, height)`` into its place; ``height()`` and ``width()`` are the
    rows and columns it takes (None: what it is given). Text beyond the width is cut."""

    def __init__(
        self,
        lines: Lines,
        height: Callable[[], int | None] = lambda: None,
        width: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.lines = lines
        self.height = height
        self.width = width
        self._cells: dict[tuple[object, ...], list[Char]] = {}  # lines drawn lately

    def reset(self) -> None:
        pass

    def preferred_width(self, max_available_width: int) -> Dimension:
        columns = self.width()
        return Dimension() if columns is None else Dimension.exact(max(columns, 0))

    def preferred_height(self, width: int, max_available_height: int) -> Dimension:
        rows = self.height()
        return Dimension() if rows is None else Dimension.exact(rows)

    def write_to_screen(
        self,
        screen: Screen,
        mouse_handlers: MouseHandlers,
        write_position: WritePosition,
        parent_style: str,
        erase_bg: bool,
        z_index: int | None,
    ) -> None:
        left, top = write_position.xpos, write_position.ypos
        width, height = write_position.width, write_position.height
        if len(self._cells) > CACHE_LINES:
            self._cells.clear()
        for dy, fragments in enumerate(self.lines(width, height)[:height]):
            key = (width, parent_style, *fragments)
            cells = self._cells.get(key)
            if cells is None:
                cells = self._cells[key] = _cells(fragments, width, parent_style)
            screen.data_buffer[top + dy].update(
                zip(range(left, left + len(cells)), cells, strict=True)
            )
        screen.height = max(screen.height, top + height)
        screen.width = max(screen.width, left + width)

    def get_children(self) -> list[Container]:
        return []


def _cells(fragments: StyleAndTextTuples, width: int, parent_style: str) -> list[Char]:
    """The screen cells of one line, from its left edge, cut at ``width`` (a wide
    character takes two: itself and an empty one)."""
    out: list[Char] = []
    for fragment in fragments:
        style, text = fragment[0], fragment[1]
        if parent_style:
            style = f"{parent_style} {style}"
        for c in text:
            char = _CHAR_CACHE[c, style]
            if len(out) + max(char.width, 1) > width:
                return out
            if char.width == 0:
                continue  # a combining character: no cell of its own
            out.append(char)
            if char.width == 2:
                out.append(_CHAR_CACHE["", style])
    return out


def one_line(
    text: Callable[[], StyleAndTextTuples], style: str = ""
) -> Callable[[int, int], list[StyleAndTextTuples]]:
    """A one-line canvas's lines; with ``style``, the line is filled to the width with it."""

    def lines(width: int, height: int) -> list[StyleAndTextTuples]:
        fragments = text()
        if style:
            used = sum(len(f[1]) for f in fragments)
            fragments = [(f"{style} {f[0]}", f[1]) for f in fragments]
            fragments.append((style, " " * max(width - used, 0)))
        return [fragments]

    return lines
