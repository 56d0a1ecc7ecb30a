"""Processes of this host: the boot id, a process's start time, and whether it still runs.

A pid names a process only on one host during one boot, and only until it is reused; so a
recorded process is identified by (host, boot id, pid, start time). Linux reads /proc;
elsewhere the boot id and start time are unknown ("" / None) and liveness is ``kill(pid, 0)``.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

_PROC = Path("/proc")


@functools.cache
def boot_id() -> str:
    """This boot's id (Linux), or "" where unknown."""
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def host() -> str:
    return socket.gethostname()


def is_local(host_name: str, boot: str | None) -> bool:
    """Whether a process recorded as on ``host_name`` during ``boot`` would be on this host
    and boot (a record without a boot id is trusted on its host)."""
    return host_name == host() and (not boot or boot == boot_id())


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (index 0 = state), or None if gone."""
    try:
        return (_PROC / str(pid) / "stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot); None if gone or unknown."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_running(pid: int, started: int | None = None) -> bool:
    """``pid`` exists and is not a zombie, and (if ``started`` is given and /proc can tell)
    it started at ``started``, so it is not a later process that reused the pid."""
    if pid <= 0:
        return False
    fields = _stat_fields(pid)
    if fields is None:
        if _PROC.is_dir():
            return False
        try:  # no /proc: ask the kernel
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started


__all__ = ["boot_id", "host", "is_local", "is_running", "start_ticks"]
