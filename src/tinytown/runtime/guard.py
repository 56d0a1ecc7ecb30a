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
from collections.abc import Callable, Iterable

MARKER_ENV = "TT_ROUND"
_SWEEP_PAUSE = 0.1  # between the two sweeps: long enough for a fork in flight to land
_READ_PACE = 0.05  # between reads of the registrations (see _main)


def fork_count() -> int | None:
    """Processes created since boot (``/proc/stat``), or None where it cannot be read."""
    for line in _read("/proc/stat").splitlines():
        if line.startswith(b"processes "):
            return int(line.split()[1])
    return None


def pids_since(first_pid: int, forks_before: int | None) -> Callable[[int], bool] | None:
    """A test for "``pid`` may have been allocated since ``first_pid`` was" -- given the
    fork count read just before ``first_pid``'s process was forked -- or None when it
    cannot be told (then every process must be looked at).

    Linux hands out pids in increasing order, wrapping at ``pid_max``. While fewer
    processes than ``pid_max`` were created since, the pids allocated since lie in the
    cyclic range from ``first_pid`` to the last pid allocated (``/proc/loadavg``); a
    round's descendants are all in it. Old processes are skipped without reading them."""
    if forks_before is None or not sys.platform.startswith("linux"):
        return None
    try:
        last = int(_read("/proc/loadavg").split()[-1].split(b"/")[0] or b"-1")
        highest = int(_read("/proc/sys/kernel/pid_max").strip() or b"0")
    except ValueError:
        return None
    forks_now = fork_count()
    if last < 0 or highest <= 0 or forks_now is None or forks_now - forks_before >= highest // 2:
        return None  # unknown, or so many forks that the pids may have gone round
    if last >= first_pid:
        return lambda pid: first_pid <= pid <= last
    return lambda pid: pid >= first_pid or pid <= last  # wrapped once


def marked_processes(
    markers: Iterable[str], *, prefix: str = "", since: tuple[int, int | None] | None = None
) -> dict[str, list[int]]:
    """Live processes whose ``TT_ROUND`` is one of ``markers`` or starts with ``prefix``
    (when given), grouped by marker. ``since`` (a pid and the fork count read just
    before it was forked): only processes that may be younger are read (see
    :func:`pids_since`; all of them when that cannot be told). Empty where /proc does
    not exist."""
    wanted = {m.encode() for m in markers}
    start = prefix.encode()
    found: dict[str, list[int]] = {}
    if (not wanted and not start) or not os.path.isdir("/proc"):
        return found
    tag = f"{MARKER_ENV}=".encode()
    me = os.getpid()
    names = os.listdir("/proc")
    # Told after the listing: a process forked meanwhile is listed and younger than it.
    candidates = pids_since(*since) if since is not None and since[0] > 0 else None
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        if candidates is not None and not candidates(int(name)):
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
