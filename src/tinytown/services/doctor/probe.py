"""Run a short-lived helper program (a probe) with a timeout, and clean up after it.

Used by ``tt doctor`` to ask agent CLIs free questions (``--version``, ``auth status``).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

import attrs
import trio

from tinytown.services.eventformat import one_line

#: How long one probe may take (node CLIs start in about a second on an idle machine).
PROBE_TIMEOUT = 20.0


@attrs.frozen
class Probe:
    """What a probe printed and how it ended (``returncode`` None: it did not finish)."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    error: str = ""  # could not start it at all

    @property
    def output(self) -> str:
        return f"{self.stdout}\n{self.stderr}"

    def last_line(self) -> str:
        """The last non-empty line it printed (stderr first: CLIs complain there)."""
        for text in (self.stderr, self.stdout):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return one_line(lines[-1])
        return ""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def probe(
    argv: Sequence[str],
    *,
    timeout: float = PROBE_TIMEOUT,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Probe:
    """Run ``argv`` with an empty stdin and return what it printed.

    The child leads a new process group; after it exits, times out or is cancelled the
    group is killed (a CLI's helpers, such as the MCP servers ``claude mcp list`` starts,
    go with it) and the child is reaped before this returns. Cancellation: propagates
    after that cleanup.
    """
    done: list[subprocess.CompletedProcess[bytes]] = []

    async def deliver_cancel(process: trio.Process) -> None:
        _kill_group(process.pid)

    async def run(task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED) -> None:
        done.append(
            await trio.run_process(
                list(argv),
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                start_new_session=True,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                deliver_cancel=deliver_cancel,
                task_status=task_status,
            )
        )

    process: trio.Process | None = None
    try:
        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                try:
                    process = await nursery.start(run)
                except OSError as exc:
                    return Probe(None, error=f"{argv[0]}: {exc.strerror or exc}")
    finally:
        if process is not None:
            _kill_group(process.pid)  # helpers it left behind in its group
    if not done:
        return Probe(None, timed_out=True)
    return Probe(
        done[0].returncode,
        done[0].stdout.decode("utf-8", "replace"),
        done[0].stderr.decode("utf-8", "replace"),
    )
