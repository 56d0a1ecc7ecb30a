"""The latest line of an agent's round log, and whether (since when) a round runs, read
from the end of the file: never the whole file.

The runtime appends each round to ``.tt/logs/<agent>.log`` (runtime/process.py): a header
``--- round N pid=P started <UTC stamp> argv=[…] ---``, the CLI's output (stderr lines
marked ``err| ``), then a footer ``--- round N pid=P exited …``. The dashboard shows the
latest output line and, from the newest header or footer, how long the current round has
run. A look costs one ``stat`` when the file has not changed; when it has, one read of its
last :data:`CHUNK` bytes, plus (only if more than that was written since the last look)
a backward scan of the new bytes for a newer header or footer, bounded by :data:`MAX_SCAN`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import attrs

#: Bytes read from the end of a changed log for its latest line.
CHUNK = 4096
#: At most this many new bytes are scanned backwards for a newer round header or footer.
MAX_SCAN = 256 * 1024
#: Bytes each scanned piece overlaps the next, so a marker line cut in two is found.
OVERLAP = 200
#: Longest line kept (the table shows less).
LINE_MAX = 300

_MARK = re.compile(rb"^--- round (?:\d+ )?pid=\d+ (started (\S+)|\S)", re.M)
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@attrs.frozen
class Tail:
    """What an agent's log says now: its latest output line ("" if none), whether its last
    round is still running (its header is the newest marker) and since when (epoch
    seconds; None when not in a round or unknown)."""

    line: str = ""
    in_round: bool = False
    round_started: float | None = None


@attrs.define
class _Seen:
    ino: int
    size: int
    tail: Tail


def clean(text: str) -> str:
    """A log line fit for one terminal cell row: escape sequences and control
    characters removed, tabs as spaces, cut to :data:`LINE_MAX`."""
    text = _ANSI.sub("", text).replace("\t", " ")
    return _CONTROL.sub("", text).strip()[:LINE_MAX]


def _stamp(raw: bytes) -> float | None:
    try:
        text = raw.decode("ascii").replace("Z", "+00:00")
        return dt.datetime.fromisoformat(text).timestamp()
    except (UnicodeDecodeError, ValueError):
        return None


def _last_mark(data: bytes) -> Tail | None:
    """The state the newest marker in ``data`` says (``line`` empty), or None."""
    marks = list(_MARK.finditer(data))
    if not marks:
        return None
    last = marks[-1]
    if last.group(2) is not None:
        return Tail("", True, _stamp(last.group(2)))
    return Tail("", False, None)


def _last_line(data: bytes, whole: bool) -> str:
    """The newest output line of ``data`` (not a marker); ``whole``: data starts at a
    line boundary (else its first, partial line is skipped)."""
    lines = data.split(b"\n")
    if not whole:
        lines = lines[1:]
    for raw in reversed(lines):
        if raw.startswith(b"--- round ") or not raw.strip():
            continue
        line = clean(raw.decode("utf-8", "replace"))
        if line:
            return line
    return ""


class LogTails:
    """Remembers what it read of each log, so an unchanged file costs one ``stat``.

    Not thread-safe: one reader (the dashboard's drawing thread)."""

    def __init__(self) -> None:
        self._seen: dict[Path, _Seen] = {}

    def forget(self, path: Path) -> None:
        self._seen.pop(path, None)

    def changed(self, path: Path | None) -> bool:
        """Whether the log at ``path`` is not what was last read of it (one ``stat``)."""
        if path is None:
            return False
        try:
            st = os.stat(path)
        except OSError:
            return path in self._seen
        seen = self._seen.get(path)
        return seen is None or seen.ino != st.st_ino or seen.size != st.st_size

    def look(self, path: Path) -> Tail:
        """The log at ``path`` as it is now (an empty :class:`Tail` if there is none)."""
        try:
            st = os.stat(path)
        except OSError:
            self._seen.pop(path, None)
            return Tail()
        seen = self._seen.get(path)
        if seen is not None and seen.ino == st.st_ino and seen.size == st.st_size:
            return seen.tail
        same_file = seen is not None and seen.ino == st.st_ino and st.st_size >= seen.size
        start = seen.size if same_file and seen is not None else 0
        try:
            tail = self._read(path, start, st.st_size, seen.tail if seen else Tail())
        except OSError:
            return seen.tail if seen else Tail()
        self._seen[path] = _Seen(st.st_ino, st.st_size, tail)
        return tail

    def _read(self, path: Path, start: int, size: int, before: Tail) -> Tail:
        with open(path, "rb") as fh:
            offset = max(size - CHUNK, 0)
            fh.seek(offset)
            data = fh.read(size - offset)
            mark = _last_mark(data)
            # More was written since the last look than one chunk: scan the rest of it.
            end = offset
            while mark is None and end > start and size - end < MAX_SCAN:
                begin = max(end - CHUNK, start)
                fh.seek(begin)
                piece = fh.read(min(end + OVERLAP, size) - begin)
                mark = _last_mark(piece)
                end = begin
        line = _last_line(data, offset == 0) or before.line
        if mark is None:  # nothing new about rounds (a rotation keeps the last we knew)
            return Tail(line, before.in_round, before.round_started)
        return Tail(line, mark.in_round, mark.round_started)


class LogView:
    """The last lines of one log, for the live log pane (re-read only when it changed)."""

    #: Bytes read from the end for the pane.
    WINDOW = 64 * 1024

    def __init__(self) -> None:
        self._key: tuple[Path, int, int] | None = None
        self._lines: list[str] = []

    def lines(self, path: Path, n: int) -> list[str]:
        """The last ``n`` lines of ``path`` (cleaned), round markers included."""
        try:
            st = os.stat(path)
        except OSError:
            self._key, self._lines = None, []
            return []
        key = (path, st.st_ino, st.st_size)
        if key != self._key:
            try:
                with open(path, "rb") as fh:
                    offset = max(st.st_size - self.WINDOW, 0)
                    fh.seek(offset)
                    raw = fh.read(st.st_size - offset).split(b"\n")
            except OSError:
                return self._lines[-n:] if n > 0 else []
            if offset:
                raw = raw[1:]  # a partial first line
            self._lines = [clean(r.decode("utf-8", "replace")) for r in raw]
            while self._lines and not self._lines[-1]:
                self._lines.pop()
            self._key = key
        return self._lines[-n:] if n > 0 else []
