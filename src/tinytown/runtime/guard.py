"""The process guard: a watchdog that kills the rounds' trees when the runtime dies.

The parent-death signal reaches only the CLI itself, not what it started. So the first
round of a process starts one small guard process (this file run as a script, standard
library only, in its own session so terminal signals aimed at ``tt run`` miss it). It
reads registrations from a pipe whose only writer is the runtime:

    + <marker> <pgid>      a round started (its TT_ROUND marker and process group)
    - <marker>             it was reaped

When the pipe reaches end-of-file, the runtime is gone, whichever way it went (``kill -9``
included: the kernel closes its descriptors). The guard reads the pipe at most every
50 ms, so a busy runtime's registrations do not each wake it (and EOF is seen within
50 ms). The guard then SIGKILLs every registered
group and every process whose ``TT_ROUND`` starts with this runtime's prefix (Linux
/proc), sweeps once more for processes forked meanwhile, and exits. After a clean exit
nothing is left to kill, so it just exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable

MARKER_ENV = "TT_ROUND"
_SWEEP_PAUSE = 0.1  # between the two sweeps: long enough for a fork in flight to land
_READ_PACE = 0.05  # between reads of the registrations (see _main)


def marked_processes(markers: Iterable[str], *, prefix: str = "") -> dict[str, list[int]]:
    """Live processes whose ``TT_ROUND`` is one of ``markers`` or starts with ``prefix``
    (when given), grouped by marker. Empty where /proc does not exist."""
    wanted = {m.encode() for m in markers}
    start = prefix.encode()
    found: dict[str, list[int]] = {}
    if (not wanted and not start) or not os.path.isdir("/proc"):
        return found
    tag = f"{MARKER_ENV}=".encode()
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        env = _read(f"/proc/{name}/environ")  # (raw os calls: this runs once per round)
        at = env.find(tag)
        while at > 0 and env[at - 1] != 0:  # only at the start of an entry
            at = env.find(tag, at + 1)
        if at < 0:
            continue
        end = env.find(b"\0", at)
        value = env[at + len(tag) : end if end >= 0 else len(env)]
        if value in wanted or (start and value.startswith(start)):
            state = _read(f"/proc/{name}/stat").rpartition(b")")[2].split()[:1]
            if state and state[0] not in (b"Z", b"X"):
                found.setdefault(value.decode(), []).append(int(name))
    return found


def _read(path: str) -> bytes:
    """The whole of a small /proc file, or b"" when it is gone or not ours to read."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def kill_marked(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    """Signal each pid, and the group it leads when it left ours with setsid()."""
    for pid in pids:
        try:
            os.kill(pid, sig)
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _main(prefix: str) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    groups: dict[str, int] = {}
    fd, rest = sys.stdin.fileno(), b""
    while chunk := os.read(fd, 65536):  # blocks until the runtime writes or is gone
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"+" and parts[2].isdigit():
                groups[parts[1].decode()] = int(parts[2])
            elif len(parts) == 2 and parts[0] == b"-":
                groups.pop(parts[1].decode(), None)
        # Paced: while this process is not waiting on the pipe, the runtime's writes wake
        # nobody (on a VM a cross-CPU wake-up costs the writer ~0.15 ms, twice per round);
        # what they wrote meanwhile is read at once. EOF is seen at most this much later.
        time.sleep(_READ_PACE)
    for sweep in range(2):
        for pgid in groups.values():
            _killpg(pgid)
        for pids in marked_processes((), prefix=prefix).values():
            kill_marked(pids)
        if sweep == 0:
            time.sleep(_SWEEP_PAUSE)


class Guard:
    """The runtime side: starts the guard process and registers rounds with it."""

    def __init__(self) -> None:
        self.prefix = uuid.uuid4().hex  # every marker of this process starts with it
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._rounds: dict[str, int] = {}

    def new_marker(self) -> str:
        return f"{self.prefix}.{uuid.uuid4().hex}"

    def watch(self, marker: str, pgid: int) -> None:
        """Register a running round (starting the guard process if needed). Never blocks:
        if the pipe is full the registration is dropped (the marker scan still finds the
        round's marked processes)."""
        with self._lock:
            self._rounds[marker] = pgid
            self._send(f"+ {marker} {pgid}\n".encode(), resend=True)

    def forget(self, marker: str) -> None:
        with self._lock:
            if self._rounds.pop(marker, None) is not None:
                self._send(f"- {marker}\n".encode(), resend=False)

    def _send(self, line: bytes, *, resend: bool) -> None:
        for _ in range(2):
            if self._proc is None or self._proc.poll() is not None:
                if not resend:
                    return  # a new guard knows only the rounds still registered
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                os.write(self._proc.stdin.fileno(), line)
                return
            except BlockingIOError:
                return
            except (BrokenPipeError, OSError):
                self._proc.kill()
                self._proc.wait()
                self._proc = None

    def _start(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", __file__, self.prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env={"PATH": os.defpath},  # nothing of the town: it is not one of its processes
            start_new_session=True,
        )
        assert proc.stdin is not None
        os.set_blocking(proc.stdin.fileno(), False)
        self._proc = proc
        for marker, pgid in self._rounds.items():
            os.write(proc.stdin.fileno(), f"+ {marker} {pgid}\n".encode())


_guard: Guard | None = None


def process_guard() -> Guard:
    """This process's guard (one per process: it watches the process's own death)."""
    global _guard
    if _guard is None:
        _guard = Guard()
    return _guard


if __name__ == "__main__":
    _main(sys.argv[1])
