"""Printing for the command line: plain lines, JSON, aligned tables, and shared formatting.

Every handler prints through :class:`Output` (never ``print`` or ``sys.exit``) so the REPL
can reuse the handlers with its own streams.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from tinytown.model import converter
from tinytown.model.ids import age_seconds, parse_time
from tinytown.services import eventformat
from tinytown.services.eventformat import clock as clock
from tinytown.services.eventformat import cut
from tinytown.services.eventformat import name_for as name_for
from tinytown.services.eventformat import one_line as one_line
from tinytown.services.eventformat import short as short


class Output:
    """Where a command writes: stdout for results, stderr for warnings and errors."""

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self._stdout = stdout
        self._stderr = stderr

    @property
    def stdout(self) -> TextIO:
        return self._stdout or sys.stdout  # looked up late: tests and the REPL swap it

    @property
    def stderr(self) -> TextIO:
        return self._stderr or sys.stderr

    def line(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def json(self, obj: Any) -> None:
        """Pretty JSON (for ``--json``)."""
        self.line(json.dumps(obj, indent=2, default=str, ensure_ascii=False))

    def json_line(self, obj: Any) -> None:
        """One compact JSON object per line (for streams such as ``events --follow --json``)."""
        self.line(json.dumps(obj, default=str, ensure_ascii=False))

    def table(self, rows: Sequence[Sequence[object]], headers: Sequence[str]) -> None:
        """Aligned columns separated by two spaces; None prints as ``-``."""
        self.line("\n".join(table_lines(rows, headers)))

    def event(self, event: Any, names: Mapping[str, str]) -> None:
        """One event as the shared event line; events no line shows (``mail``) print nothing."""
        if eventformat.shown(event):
            self.line(eventformat.event_line(event, names))

    def warn(self, text: str) -> None:
        print(f"tt: warning: {text}", file=self.stderr, flush=True)

    def error(self, text: str) -> None:
        """A user-facing error: ``tt: <one sentence>`` on stderr."""
        print(f"tt: {one_line(text)}", file=self.stderr, flush=True)


def table_lines(
    rows: Sequence[Sequence[object]],
    headers: Sequence[str],
    *,
    width: int | None = None,
    shrink: Sequence[int] = (),
    styles: Mapping[tuple[int, int], str] | None = None,
    middle: Sequence[int] = (),
) -> list[str]:
    """Aligned columns separated by two spaces; None prints as ``-``.

    With ``width``, the columns listed in ``shrink`` (indexes, first given first) give up
    room until the table fits, down to their header's width (6 at least); a cell cut
    short ends with ``…`` (in the columns listed in ``middle``, the ``…`` replaces the
    middle, so names differing at their end stay apart). ``styles`` colours cells
    ((row, column) -> a :data:`STYLES` name; row 0 is the first data row) after padding,
    so alignment is kept."""
    cells = [[str(h) for h in headers]]
    cells += [["-" if c is None or c == "" else _cell(str(c)) for c in row] for row in rows]
    natural = [max(map(len, column)) for column in zip(*cells, strict=True)]
    widths = list(natural)
    if width is not None:
        excess = sum(widths) + 2 * (len(widths) - 1) - width
        for col in shrink:
            if excess <= 0:
                break
            give = min(max(widths[col] - max(len(headers[col]), 6), 0), excess)
            widths[col] -= give
            excess -= give
    styles = styles or {}
    styled_rows = {r for r, _ in styles}
    out = []
    for r, row in enumerate(cells):
        if widths == natural and r - 1 not in styled_rows:  # nothing to cut or colour
            line = "  ".join([cell.ljust(w) for cell, w in zip(row, widths, strict=True)])
            out.append(line.rstrip())
            continue
        parts = []
        for c, (cell, w) in enumerate(zip(row, widths, strict=True)):
            if len(cell) <= w:
                text = cell
            elif c in middle and w >= 5:
                head = (w - 1) // 2
                text = cell[:head] + "…" + cell[len(cell) - (w - 1 - head) :]
            else:
                text = cell[: w - 1] + "…"
            padded = text.ljust(w)
            style = styles.get((r - 1, c)) if r else None
            parts.append(paint(text, style) + padded[len(text) :] if style else padded)
        out.append("  ".join(parts).rstrip())
    return out


def _cell(text: str) -> str:
    """A table cell on one line (leading spaces, e.g. a tree's indent, are kept)."""
    return " ".join(text.splitlines()) if "\n" in text or "\r" in text else text


#: ANSI SGR codes of the styles :func:`paint` knows.
STYLES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def paint(text: str, style: str | None) -> str:
    """``text`` in an ANSI style (the caller decides whether colour is on)."""
    return f"\x1b[{STYLES[style]}m{text}\x1b[0m" if style else text


def color_enabled(stream: TextIO) -> bool:
    """Colour only on a terminal, never when ``NO_COLOR`` is set to anything non-empty
    (https://no-color.org) or ``TERM=dumb``."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def terminal_width(stream: TextIO) -> int | None:
    """The width to fit output to: ``COLUMNS`` when set, else the terminal's width when
    ``stream`` is a terminal, else None (a pipe or file: nothing is cut)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        pass
    return None


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


# -- formatting helpers shared by the commands -------------------------------------------


def clip(text: str | None, width: int = 60) -> str:
    """One line, at most ``width`` characters, cut at a word boundary and marked with ``…``."""
    return cut(text, width)


def stamp_local(stamp: str | None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in local time, or ``-``."""
    if not stamp:
        return "-"
    try:
        return parse_time(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp


def duration(seconds: float | None) -> str:
    """A compact duration: ``45s``, ``3m12s``, ``2h05m``, ``3d4h``."""
    if seconds is None:
        return "-"
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def rough(seconds: float) -> str:
    """A duration as people say it: ``12 s``, ``3 min``, ``2 h``, ``4 d``."""
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def ago(stamp: str | None) -> str:
    """How long ago a timestamp was, e.g. ``3 min ago`` (``just now`` under 2 s)."""
    return ago_seconds(age_seconds(stamp))


def ago_seconds(age: float | None) -> str:
    """An age in seconds as :func:`ago` says it (``-`` for None)."""
    if age is None:
        return "-"
    return "just now" if age < 2 else f"{rough(age)} ago"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def record(obj: object) -> Any:
    """An attrs record as plain JSON data (the same field names as in Redis)."""
    return converter.unstructure(obj)


def event_line(event: Any, names: Mapping[str, str]) -> str:
    """``HH:MM:SS [kind] who: text``: the shared event line (services/eventformat.py)."""
    return eventformat.event_line(event, names)


def event_record(event: Any, names: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": event.id, **event.fields}
    if event.fields.get("agent"):
        out["agent_name"] = name_for(event.fields["agent"], names)
    return out
