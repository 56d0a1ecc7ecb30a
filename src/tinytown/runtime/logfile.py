"""An append-only log file that rotates at a size, so no flood can fill the disk.

``<name>`` is the live file; when a write would take it past ``max_bytes`` it becomes
``<name>.1`` (``.1`` becomes ``.2`` ... the oldest beyond ``keep`` is deleted) and a fresh
``<name>`` is started. What one log can occupy is therefore at most
``max_bytes * (keep + 1)`` bytes, whatever the writer does.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from tinytown.services.config import TownConfig

#: Set by ``tt run --detach`` for its child: the runtime.log the child writes (rotating).
RUNTIME_LOG_ENV = "TT_RUNTIME_LOG"


class RotatingLog:
    """A binary append-only log with size-based rotation; writes are flushed at once.

    Not thread-safe; one writer per path (one runtime writes an agent's log, one round at
    a time). ``max_bytes <= 0`` disables rotation.
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int, keep: int) -> None:
        self.path = Path(path)
        self.max_bytes = int(max_bytes)
        self.keep = max(0, int(keep))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = open(self.path, "ab")
        self._size = self._file.tell()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data`` (split across files when it crosses the limit) and flush."""
        view = memoryview(data)
        while view:
            if self.max_bytes > 0:
                room = self.max_bytes - self._size
                if room <= 0:
                    self._rotate()
                    room = self.max_bytes
                piece, view = view[:room], view[room:]
            else:
                piece, view = view, view[:0]
            self._file.write(piece)
            self._size += len(piece)
        # Flushing makes every chunk visible to log followers (tt logs -f) as it arrives.
        self._file.flush()

    def _rotate(self) -> None:
        self._file.close()
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
        else:
            self.path.with_name(f"{self.path.name}.{self.keep}").unlink(missing_ok=True)
            for n in range(self.keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{n + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab")
        self._size = 0

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RotatingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def runtime_echo(root: Path) -> Callable[[str], None]:
    """Where ``tt run`` writes its lines: stdout, or for a detached runtime (``$TT_RUNTIME_LOG``
    set by ``tt run --detach``) the runtime.log, rotating per ``runtime.log_max_bytes`` and
    ``runtime.log_keep``. (Its stderr still goes to the file it was started with, for errors
    at start; those are few.)"""
    path = os.environ.get(RUNTIME_LOG_ENV)
    if not path:
        return lambda line: print(line, flush=True)
    config = TownConfig.load(root)
    log = RotatingLog(
        path, int(config.setting("runtime.log_max_bytes")), int(config.setting("runtime.log_keep"))
    )
    return lambda line: log.write(f"{line}\n".encode("utf-8", "replace"))


def rotated_files(path: str | os.PathLike[str]) -> list[Path]:
    """The live file and its rotated predecessors that exist, newest first."""
    live = Path(path)
    out = [live] if live.exists() else []
    n = 1
    while (older := live.with_name(f"{live.name}.{n}")).exists():
        out.append(older)
        n += 1
    return out


__all__ = ["RUNTIME_LOG_ENV", "RotatingLog", "rotated_files", "runtime_echo"]
