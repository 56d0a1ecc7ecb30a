"""Starting a round's child: forked where a parent-death signal can be relied on.

On Linux the child runs under ``setpriv --pdeathsig KILL``, so the kernel kills it when
the runtime dies, even by ``kill -9``. The signal follows the *thread* that forked the
child, so every fork happens in one long-lived spawner thread (trio's worker threads
retire when idle; forking on the trio thread would stall the event loop for each
round). The child is then awaited through a pidfd. Without setpriv or pidfds, trio's own
spawn is used and only the guard process and the ledger apply (docs/process-trees.md).
"""

from __future__ import annotations

import functools
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable

import outcome
import trio


@functools.cache
def _pdeathsig_prefix() -> tuple[str, ...]:
    """``setpriv --pdeathsig KILL --`` where it works (Linux, util-linux >= 2.33), else ()."""
    setpriv = shutil.which("setpriv", path=os.defpath + os.pathsep + "/usr/sbin:/sbin")
    if not sys.platform.startswith("linux") or not setpriv or not hasattr(os, "pidfd_open"):
        return ()
    prefix = (setpriv, "--pdeathsig", "KILL", "--")
    try:
        os.close(os.pidfd_open(os.getpid()))  # the kernel (or a sandbox) may refuse pidfds
        subprocess.run([*prefix, "true"], check=True, capture_output=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ()
    return prefix


class _SpawnerThread:
    """One long-lived thread that forks every round's child.

    A parent-death signal fires when the *thread* that forked the child exits, so the
    fork cannot happen in trio's worker threads (they retire when idle); on the trio
    thread it would block the whole runtime for each fork (~2 ms, measured: half the task
    throughput). This thread lives as long as the process, so the signal fires exactly
    when the runtime dies.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def run(self, fn: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        """Run ``fn`` in the spawner thread and return its result. Not cancellable (a fork
        takes milliseconds, and a child created for a cancelled caller must still be
        handed back to be stopped and reaped)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="tt-spawner", daemon=True)
                self._thread.start()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        box: list[outcome.Outcome[subprocess.Popen[bytes]]] = []

        def deliver(result: outcome.Outcome[subprocess.Popen[bytes]]) -> None:
            box.append(result)
            done.set()

        self._jobs.put(lambda: token.run_sync_soon(deliver, outcome.capture(fn)))
        with trio.CancelScope(shield=True):
            await done.wait()
        return box[0].unwrap()

    def _serve(self) -> None:
        while True:
            self._jobs.get()()


_SPAWNER = _SpawnerThread()


class Child:
    """A child forked by the spawner thread (for its parent-death signal), awaited through
    a pidfd; offers the part of :class:`trio.Process` that run_cli uses."""

    def __init__(self, popen: subprocess.Popen[bytes], streams: list[trio.lowlevel.FdStream]):
        self._popen = popen
        self.stdin, self.stdout, self.stderr = streams
        self.pid = popen.pid
        self._pidfd: int | None = os.pidfd_open(self.pid)

    @classmethod
    async def start(
        cls, args: list[str], cwd: str | os.PathLike[str], env: dict[str, str]
    ) -> Child:
        """Fork and exec ``args`` with pipes on stdin/stdout/stderr. Not cancellable."""
        fds: list[int] = []  # child ends, closed in the parent once it has forked
        ours: list[trio.lowlevel.FdStream] = []
        try:
            pipes = [os.pipe() for _ in range(3)]
            child_in, child_out, child_err = pipes[0][0], pipes[1][1], pipes[2][1]
            fds += [child_in, child_out, child_err]
            ours += [trio.lowlevel.FdStream(pipes[0][1])]
            ours += [trio.lowlevel.FdStream(pipes[1][0]), trio.lowlevel.FdStream(pipes[2][0])]

            def fork() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    [*_pdeathsig_prefix(), *args],
                    stdin=child_in,
                    stdout=child_out,
                    stderr=child_err,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                )

            popen = await _SPAWNER.run(fork)
        except BaseException:
            for stream in ours:
                stream.close()
            raise
        finally:
            for fd in fds:
                os.close(fd)
        return cls(popen, ours)

    @property
    def returncode(self) -> int | None:
        """The exit status once the child exited (checking reaps it), else None."""
        return self._popen.poll()

    async def wait(self) -> int:
        """Wait for the child to exit and reap it. Cancellable (it is then not reaped)."""
        if self._popen.poll() is None:
            assert self._pidfd is not None
            await trio.lowlevel.wait_readable(self._pidfd)  # readable once it exited
        code = self._popen.wait()
        if self._pidfd is not None:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        return code


async def spawn(
    args: list[str], cwd: str | os.PathLike[str], env: dict[str, str]
) -> Child | trio.Process:
    if _pdeathsig_prefix():
        return await Child.start(args, cwd, env)
    # No parent-death signal to be had: trio's spawn (in a worker thread) is as good.
    return await trio.lowlevel.open_process(
        args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )


__all__ = ["Child", "spawn"]
