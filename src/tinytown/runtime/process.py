"""Run an agent's CLI once per round as a subprocess, under trio structured cancellation.

The child is started with ``start_new_session=True`` so it leads its own process group
(pgid == pid); every signal goes to the whole group and to every process carrying the
round's ``TT_ROUND`` marker (runtime/proctree.py), so helpers the CLI spawns share its fate,
even one that left the group with ``setsid()``.

On Linux the child also gets a parent-death signal (SIGKILL when the runtime dies, even by
``kill -9``): see runtime/spawn.py for how it is started so that the signal is reliable.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from tinytown.errors import CliNotFoundError
from tinytown.runtime.guard import fork_count, process_guard
from tinytown.runtime.linewatch import LineWatch
from tinytown.runtime.logfile import RotatingLog
from tinytown.runtime.proctree import MARKER_ENV, Sweeps, signal_tree
from tinytown.runtime.prompt import round_number
from tinytown.runtime.spawn import Child, spawn
from tinytown.services.executables import executable_found

# How long the pipes may stay open after the main child exited (a grandchild holding them).
_PIPE_GRACE = 1.0
_CHUNK = 65536
DEFAULT_LOG_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_KEEP = 3
#: How much of stdout a round keeps for a CLI whose output is read as a whole (JSON).
STRUCTURED_STDOUT_BYTES = 8 * 1024 * 1024
#: ... and of stderr (where some print their error object).
STRUCTURED_STDERR_BYTES = 256 * 1024


@attrs.frozen
class RoundResult:
    """Outcome of one round; ``returncode`` is None when the round timed out or was killed
    (or stopped early). ``stopped_by`` is what the ``watch`` function answered for the
    line that ended the round early (None: it was not stopped so)."""

    pid: int
    returncode: int | None
    timed_out: bool
    stdout_tail: str
    stderr_tail: str
    duration: float
    stopped_by: Any = None


class RunningProcess:
    """Handle given to the caller through ``task_status.started()``; pauses/resumes the group.

    Methods must be called from the trio thread (they move the timeout deadline).
    """

    def __init__(self, pid: int, timeout: float | None, marker: str | None = None) -> None:
        self.pid = pid
        self.marker = marker  # TT_ROUND of this round's processes
        self._finished = False
        self._paused = False
        self._forks_before: int | None = None  # the fork count just before it was forked
        # Remaining unpaused time while suspended; the deadline itself is parked at +inf.
        self._remaining = math.inf
        self._deadline = trio.CancelScope()
        if timeout is not None:
            self._deadline.deadline = trio.current_time() + timeout

    @property
    def paused(self) -> bool:
        return self._paused

    def suspend(self) -> None:
        """SIGSTOP the group; idempotent. Suspended time does not count toward the timeout."""
        if self._paused or self._finished:
            return
        self._signal(signal.SIGSTOP)
        self._paused = True
        self._remaining = self._deadline.deadline - trio.current_time()
        self._deadline.deadline = math.inf

    def resume(self) -> None:
        """SIGCONT the group; idempotent."""
        if not self._paused or self._finished:
            return
        self._signal(signal.SIGCONT)
        self._paused = False
        self._deadline.deadline = trio.current_time() + self._remaining

    def _signal(self, sig: int) -> None:
        # The group, plus marked descendants that left it (setsid); a missing group is fine.
        signal_tree(self.pid, self.marker, sig)


class _Tail:
    """The last ``limit`` bytes of a stream, so a chatty child cannot grow our memory."""

    def __init__(self, limit: int) -> None:
        self._limit = max(0, limit)
        self._buf = bytearray()

    def add(self, data: bytes | bytearray) -> None:
        if len(data) >= self._limit:
            self._buf[:] = data[len(data) - self._limit :]
        else:
            self._buf += data
            del self._buf[: max(0, len(self._buf) - self._limit)]

    def text(self) -> str:
        return self._buf.decode("utf-8", errors="replace")


#: Prefix of each line the CLI wrote on stderr, in the round log (stdout lines have none).
ERR_PREFIX = b"err| "
#: A line longer than this is written out in pieces (each ended with a newline).
_LINE_MAX = 65536


class _Log:
    """The round log (rotating), written in whole lines only: stdout and stderr are
    line-buffered apart, so a line of one never runs into a line of the other; stderr
    lines start with :data:`ERR_PREFIX`. A partial last line is ended at the round's end."""

    def __init__(self, file: RotatingLog) -> None:
        self._file = file
        self._partial = {False: bytearray(), True: bytearray()}  # is stderr -> unfinished line

    def write(self, data: bytes | bytearray, err: bool = False) -> None:
        buf = self._partial[err]
        buf += data
        end = buf.rfind(b"\n")
        if end >= 0:
            self._emit(bytes(buf[: end + 1]), err)
            del buf[: end + 1]
        while len(buf) > _LINE_MAX:  # no newline in sight: bounded memory, a marked break
            self._emit(bytes(buf[:_LINE_MAX]) + b"\n", err)
            del buf[:_LINE_MAX]

    def _emit(self, lines: bytes, err: bool) -> None:
        if err:
            lines = b"".join(ERR_PREFIX + line for line in lines.splitlines(keepends=True))
        # Blocking write + flush: local appends are fast, a thread hop per chunk is not.
        self._file.write(lines)

    def finish(self) -> None:
        """End both streams' unfinished lines (the round is over)."""
        for err, buf in self._partial.items():
            if buf:
                self._emit(bytes(buf) + b"\n", err)
                buf.clear()

    def line(self, text: str) -> None:
        """A line of our own (header, footer) after every whole line of the CLI's."""
        self.finish()
        self._file.write(text.encode())


def _missing(prog: str) -> CliNotFoundError:
    if os.sep in prog:
        return CliNotFoundError(f"CLI program {prog!r} does not exist or is not executable.")
    return CliNotFoundError(f"CLI program {prog!r} is not installed or not on PATH.")


def _require_executable(prog: str, cwd: str | os.PathLike[str], env: Mapping[str, str]) -> None:
    if not executable_found(prog, cwd=cwd, env=env):  # the one check, same rules as spawn's
        raise _missing(prog)


def _utc_stamp() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _feed_stdin(stream: trio.abc.SendStream, data: bytes) -> None:
    try:
        if data:
            await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the child exited or closed stdin without reading the prompt: not our problem
    finally:
        await stream.aclose()  # EOF tells the child the prompt is complete


async def _pump(
    stream: trio.abc.ReceiveStream,
    tail: _Tail,
    log: _Log,
    err: bool,
    watch: LineWatch[Any] | None,
) -> None:
    while chunk := await stream.receive_some(_CHUNK):
        tail.add(chunk)
        log.write(chunk, err)
        if watch is not None:
            watch.feed(chunk, err)


async def _pump_io(
    io_scope: trio.CancelScope,
    proc: Child | trio.Process,
    prompt: bytes,
    log: _Log,
    tails: tuple[_Tail, _Tail],
    eof: trio.Event,
    watch: LineWatch[Any] | None,
) -> None:
    # io_scope is shielded: output keeps draining (and the child never blocks on a full pipe)
    # while we run the SIGTERM ladder; run_cli cancels it explicitly when it is done.
    assert proc.stdin and proc.stdout and proc.stderr
    with io_scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_feed_stdin, proc.stdin, prompt)
            async with trio.open_nursery() as readers:
                readers.start_soon(_pump, proc.stdout, tails[0], log, False, watch)
                readers.start_soon(_pump, proc.stderr, tails[1], log, True, watch)
            if watch is not None:
                watch.finish()
            eof.set()


async def _stop_group(
    proc: Child | trio.Process, handle: RunningProcess, kill_grace: float
) -> None:
    """SIGTERM the group, wait up to kill_grace, SIGKILL it, reap. Call shielded."""
    handle._finished = True  # suspend()/resume() become no-ops from here on
    if proc.returncode is None:  # (polling also reaps a leader that just exited)
        handle._signal(signal.SIGTERM)
        # A stopped process cannot act on SIGTERM until continued.
        handle._signal(signal.SIGCONT)
        handle._paused = False
        with trio.move_on_after(kill_grace):
            await proc.wait()
        if proc.returncode is None:
            handle._signal(signal.SIGKILL)
            await proc.wait()
    # Sweep members left in the group (background grandchildren) and marked descendants
    # that left it. The pgid stays reserved while any member lives; if none does we get
    # ESRCH, barring a pid wrap-around in between. The /proc scan runs off the trio thread,
    # shared with the other rounds ending meanwhile.
    signal_tree(handle.pid, None, signal.SIGKILL)
    if handle.marker:
        await _sweeps().sweep(handle.marker, (handle.pid, handle._forks_before))


_SWEEPS: trio.lowlevel.RunVar[Sweeps] = trio.lowlevel.RunVar("tinytown_sweeps")


def _sweeps() -> Sweeps:
    """This trio run's shared sweeps (one per run: its events belong to that run)."""
    try:
        return _SWEEPS.get()
    except LookupError:
        sweeps = Sweeps()
        _SWEEPS.set(sweeps)
        return sweeps


async def run_cli(
    argv: Sequence[str],
    *,
    prompt: str,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    log_path: str | os.PathLike[str],
    timeout: float | None = None,
    kill_grace: float = 5.0,
    tail_bytes: int = 16384,
    stdout_bytes: int | None = None,
    watch: Callable[[str], Any] | None = None,
    log_max_bytes: int = DEFAULT_LOG_MAX_BYTES,
    log_keep: int = DEFAULT_LOG_KEEP,
    marker: str | None = None,
    round_no: int | None = None,
    task_status: trio.TaskStatus[RunningProcess] = trio.TASK_STATUS_IGNORED,
) -> RoundResult:
    """Run ``argv`` once with ``prompt`` on stdin and return how the round ended.

    The child gets ``env`` plus ``TT_ROUND=<marker>`` (the marker its descendants
    inherit: ``marker`` when given, made by the process guard, else a fresh one) and
    ``cwd``, and leads a new process group; on Linux it is SIGKILLed if this process
    dies. ``prompt`` is written to its stdin, which is then closed (a child that
    never reads it is fine). stdout and stderr are drained concurrently and appended to
    ``log_path`` in whole lines, each stream line-buffered apart, stderr lines prefixed
    ``err| `` (parents created; a header line ``--- round N pid=P started ... ---`` and a
    footer frame the round, N being ``round_no`` or else the round the prompt names; the
    file rotates at ``log_max_bytes`` keeping ``log_keep`` old files); only the last
    ``tail_bytes`` of each stream are kept in memory (of stdout: ``stdout_bytes`` when
    given, for a CLI whose whole output is read as JSON). Once the process exists,
    ``task_status.started()`` receives a :class:`RunningProcess` for suspend/resume. (The
    runtime records the round's marker in the process ledger before calling this, in its
    own atomic write: proctree.py.)

    The round ends when the child exits and both pipes reach EOF; if a grandchild keeps a
    pipe open, it gets ``_PIPE_GRACE`` seconds. Any process still in the group or carrying
    the marker then is SIGKILLed: a round never leaves anything of its tree running.

    Early stop: each whole line of stdout and stderr (decoded, without its newline) is
    given to ``watch`` when set; the first answer that is not None ends the round as a
    timeout does (the group is stopped and reaped) and becomes ``stopped_by``.

    Timeout: after ``timeout`` seconds of unpaused running time the group gets SIGTERM, then
    SIGKILL after ``kill_grace`` seconds if the leader is still alive; it is reaped and the
    result has ``timed_out=True`` and ``returncode=None``.

    Cancellation: if the caller's scope is cancelled, the same SIGTERM/SIGCONT/grace/SIGKILL
    ladder runs shielded, the child is reaped, the pipes are closed, the log gets its footer,
    and then :exc:`trio.Cancelled` propagates (bare, not inside an ExceptionGroup). So
    cancellation may take up to ``kill_grace`` + ``_PIPE_GRACE`` seconds to complete.

    Raises:
      CliNotFoundError: ``argv[0]`` is missing or not executable; checked before anything
        is started (using ``env["PATH"]``), and mapped from spawn failures.
    """
    args = [os.fspath(arg) for arg in argv]
    if not args:
        raise ValueError("argv must name a program")
    guard = process_guard()
    marker = marker or guard.new_marker()
    child_env = {**env, MARKER_ENV: marker}
    _require_executable(args[0], cwd, child_env)
    if round_no is None:
        round_no = round_number(prompt)
    label = "round" if round_no is None else f"round {round_no}"
    with RotatingLog(log_path, log_max_bytes, log_keep) as log_file:
        log = _Log(log_file)
        try:
            forks_before = fork_count()  # bounds the end-of-round sweep (proctree.Sweeps)
            proc = await spawn(args, cwd, child_env)
        except (FileNotFoundError, PermissionError) as exc:
            raise _missing(args[0]) from exc
        guard.watch(marker, proc.pid)  # from here, our death takes the whole tree
        started = trio.current_time()
        handle = RunningProcess(proc.pid, timeout, marker)
        handle._forks_before = forks_before
        tails = (_Tail(stdout_bytes or tail_bytes), _Tail(tail_bytes))
        early = trio.CancelScope()
        watcher = None if watch is None else LineWatch(watch, early.cancel)
        eof = trio.Event()
        io_scope = trio.CancelScope(shield=True)
        timed_out = cancelled = stopped = False
        outcome = "aborted"  # footer wording; stays so only if an unexpected error escapes
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    _pump_io, io_scope, proc, prompt.encode(), log, tails, eof, watcher
                )
                try:
                    stamp = _utc_stamp()
                    log.line(f"--- {label} pid={proc.pid} started {stamp} argv={args!r} ---\n")
                    task_status.started(handle)
                    with handle._deadline, early:
                        await proc.wait()
                    timed_out = handle._deadline.cancelled_caught
                    stopped = early.cancelled_caught
                    outcome = "timed out" if timed_out else f"exited returncode={proc.returncode}"
                    if stopped:
                        outcome = "stopped early"
                    if not (timed_out or stopped):
                        with trio.move_on_after(_PIPE_GRACE):
                            await eof.wait()
                except trio.Cancelled:
                    # Swallowed only so the nursery does not wrap it in an ExceptionGroup;
                    # cancellation is level-triggered, so the checkpoint below re-raises it.
                    cancelled = True
                    outcome = "cancelled"
                finally:
                    with trio.CancelScope(shield=True):
                        await _stop_group(proc, handle, kill_grace)
                        guard.forget(marker)
                        with trio.move_on_after(_PIPE_GRACE):
                            await eof.wait()  # collect what the dying group wrote
                        io_scope.cancel()
        finally:
            handle._finished = True
            with trio.CancelScope(shield=True):
                for stream in (proc.stdin, proc.stdout, proc.stderr):
                    if stream is not None:
                        await stream.aclose()
            duration = trio.current_time() - started
            log.line(f"--- {label} pid={proc.pid} {outcome} after {duration:.3f}s ---\n")
    if cancelled:
        await trio.lowlevel.checkpoint()
    killed = timed_out or cancelled or stopped
    return RoundResult(
        pid=proc.pid,
        returncode=None if killed else proc.returncode,
        timed_out=timed_out,
        stdout_tail=tails[0].text(),
        stderr_tail=tails[1].text(),
        duration=duration,
        stopped_by=None if watcher is None else watcher.found,
    )


__all__ = ["ERR_PREFIX", "RoundResult", "RunningProcess", "run_cli"]
