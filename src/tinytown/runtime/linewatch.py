"""Watching a round's output line by line for a sign that it cannot succeed (a CLI that
waits for the network forever, say), so the round can end at once instead of at its
timeout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: A partial line longer than this is looked at as it is, then dropped (bounded memory).
LINE_MAX = 65536


class LineWatch(Generic[T]):
    """Feeds each whole line of stdout and stderr (apart: a line of one never runs into
    the other), decoded and without its newline, to ``check``; the first non-None answer
    is kept in :attr:`found` and ``on_found`` is called once."""

    def __init__(self, check: Callable[[str], T | None], on_found: Callable[[], None]) -> None:
        self._check = check
        self._on_found = on_found
        self._partial = {False: bytearray(), True: bytearray()}
        self.found: T | None = None

    def feed(self, data: bytes | bytearray, err: bool) -> None:
        if self.found is not None:
            return
        buf = self._partial[err]
        buf += data
        end = buf.rfind(b"\n")
        if end >= 0:
            lines = bytes(buf[:end]).split(b"\n")
            del buf[: end + 1]
            for line in lines:
                if self._look(line):
                    return
        if len(buf) > LINE_MAX:
            self._look(bytes(buf))
            buf.clear()

    def finish(self) -> None:
        """Look at the streams' unfinished last lines (the round is over)."""
        for buf in self._partial.values():
            if buf and self.found is None:
                self._look(bytes(buf))
            buf.clear()

    def _look(self, line: bytes) -> bool:
        text = line.decode("utf-8", errors="replace").rstrip("\r")
        if not text.strip():
            return False
        hit = self._check(text)
        if hit is None:
            return False
        self.found = hit
        self._on_found()
        return True
