"""The peer job queues' worker-side apps (one module each; a worker imports only its own).

Every app runs the same job as a Tinytown round whose CLI is ``true``: one subprocess
``true``, waited for. The socket of the bench's private Redis is ``BENCH_REDIS_SOCKET``.
Asyncio peers spawn it with ``asyncio.create_subprocess_exec`` (a blocking
``subprocess.run`` would stall their event loop and serialise the 8 slots), as Tinytown's
runtime does with trio.
"""

from __future__ import annotations

import asyncio
import os
import subprocess

SOCKET = os.environ.get("BENCH_REDIS_SOCKET", "")
QUEUE = "bench"
SLOTS = 8


def run_true() -> int:
    """The job, for thread-based workers."""
    return subprocess.run(["true"], check=True).returncode


DONE = "bench:peer:done"
_done_client: object = None


async def run_true_async() -> int:
    """The job, for asyncio workers; then count it done (one INCR on a client of the
    worker's own, the same cost for each asyncio peer: their native "is everything
    finished" queries differ)."""
    global _done_client
    proc = await asyncio.create_subprocess_exec("true")
    code = await proc.wait()
    if _done_client is None:
        import redis.asyncio

        _done_client = redis.asyncio.Redis(unix_socket_path=SOCKET)
    await _done_client.incr(DONE)  # type: ignore[attr-defined]
    return code
