"""Printing for the command line: plain lines, JSON, aligned tables, and shared formatting.

Every handler prints through :class:`Output` (never ``print`` or ``sys.exit``) so the REPL
can reuse the handlers with its own streams.
"""

from __future__ import annotations

import argparse
import json
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


def table_lines(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> list[str]:
    cells = [[str(h) for h in headers]]
    cells += [["-" if c is None or c == "" else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]


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


def ago(stamp: str | None) -> str:
    """How long ago a timestamp was, e.g. ``12s ago``."""
    age = age_seconds(stamp)
    return "-" if age is None else f"{duration(age)} ago"


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
