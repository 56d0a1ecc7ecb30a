"""While ``tt run`` hosts a town, its command server runs beside it (``tinytown.forkserver``:
``tt`` commands in the town start in a few milliseconds instead of ~100 ms of imports).

The server is this process's child in a session of its own (the terminal's Ctrl-C is the
town's to handle, not the server's); its standard input is a pipe whose other end only
this process holds, so it exits as soon as the town's process is gone, however that went
(kill -9 included). ``runtime.command_server = false`` turns it off.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

from tinytown.launcher import STALE_EXIT, socket_path

#: Pause before starting a server again after it failed (doubling, at most RETRY_MAX).
RETRY_FIRST = 1.0
RETRY_MAX = 60.0
#: How long a server gets to leave after its lifeline closed before it is killed.
STOP_GRACE = 2.0


def log_path(root: Path) -> Path:
    return root / ".tt" / "logs" / "command-server.log"


async def keep_command_server(root: Path) -> None:
    """Run the command server of the town at ``root`` until cancelled; start it again when
    it exits: at once when it found its code changed on disk, else after a pause (1 s,
    doubling up to a minute).

    Cancellation: the server's lifeline is closed and it exits (killed after STOP_GRACE
    seconds if it has not); commands it started go on and report to their own ``tt``.
    Never returns otherwise. (The pause starts again from 1 s after a server that ran for
    more than a minute.)"""
    pause = RETRY_FIRST
    while True:
        started = trio.current_time()
        code = await _serve_once(root)
        if code == STALE_EXIT:
            continue
        if trio.current_time() - started > RETRY_MAX:
            pause = RETRY_FIRST  # it ran well for a while: a new failure starts afresh
        await trio.sleep(pause)
        pause = min(pause * 2, RETRY_MAX)


async def _serve_once(root: Path) -> int:
    log = log_path(root)
    log.parent.mkdir(parents=True, exist_ok=True)
    lifeline_r, lifeline_w = os.pipe()
    closed = False

    def close_lifeline() -> None:
        nonlocal closed
        if not closed:
            closed = True
            os.close(lifeline_w)

    async def stop(process: trio.Process) -> None:
        close_lifeline()
        with trio.move_on_after(STOP_GRACE):
            await process.wait()
        if process.returncode is None:
            process.kill()

    try:
        with open(log, "ab") as out:
            done = await trio.run_process(
                # -P: not the current directory first on the module path (a project's
                # own shlex.py must not be imported by the server)
                [sys.executable, "-P", "-m", "tinytown.forkserver", socket_path(str(root))],
                stdin=lifeline_r,
                stdout=out,
                stderr=out,
                check=False,
                start_new_session=True,
                deliver_cancel=stop,
            )
        return done.returncode
    finally:
        os.close(lifeline_r)
        close_lifeline()
