"""Peer job queues for the task-throughput figure, each running the same job as a
Tinytown round (spawn ``true``, wait) with 8 slots on the bench's Redis: RQ (8 ``rq
worker`` processes), Dramatiq (1 process x 8 threads), the asyncio queues SAQ, streaQ and
taskiq (1 process, 8 concurrent jobs), and the spawn limit (8 threads spawning ``true``,
no queue at all). A peer whose library is missing (the ``bench`` extra) is skipped with a
note; a peer that fails is reported as an error detail, not as the figure's error.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import SCRIPTS
from bench.env import Bench, mono

QUEUE = "bench"
DONE = "bench:peer:done"
SLOTS = 8
#: Completion polling: rare enough not to steal CPU from the workers.
POLL = 0.02
WARMUP = SLOTS


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _env(b: Bench) -> dict[str, str]:
    env = dict(b.env)
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPTS), env.get("PYTHONPATH", "")])
    env["BENCH_REDIS_SOCKET"] = str(b.server.socket_path)
    return env


def _tool(name: str, module: str) -> list[str]:
    """A console script next to this Python, else ``python -m module``."""
    path = Path(sys.executable).parent / name
    return [str(path)] if path.exists() else [sys.executable, "-m", module]


def _start(b: Bench, argv: list[str]) -> subprocess.Popen[bytes]:
    log = open(b.tmp / f"peer-{Path(argv[0]).name}-{len(b.procs)}.log", "ab")
    proc = b.popen(argv, env=_env(b), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def _wait_for(check: Callable[[], bool], procs: list[subprocess.Popen[bytes]], what: str) -> None:
    deadline = mono() + 600
    while not check():
        if mono() > deadline:
            raise RuntimeError(f"{what}: timed out")
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{what}: worker exited with {dead[0].returncode}")
        time.sleep(POLL)


def _counted(
    b: Bench,
    procs: list[subprocess.Popen[bytes]],
    enqueue: Callable[[int], None],
    n: int,
    what: str,
) -> dict[str, float]:
    """Warm up (SLOTS jobs, which also proves the workers are up), then time n jobs;
    done when the done counter (one INCR per finished job) reached them."""
    b.r.delete(DONE)
    enqueue(WARMUP)
    _wait_for(lambda: int(b.r.get(DONE) or 0) >= WARMUP, procs, what)
    t0 = mono()
    enqueue(n)
    t_enqueued = mono()
    _wait_for(lambda: int(b.r.get(DONE) or 0) >= WARMUP + n, procs, what)
    return {"elapsed": mono() - t0, "enqueue_elapsed": t_enqueued - t0}


# -- the spawn limit -------------------------------------------------------------------


def spawn_limit(n: int) -> dict[str, float]:
    """n runs of ``true`` from SLOTS threads (subprocess.run): no queue, no Redis."""
    left = [n]
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            subprocess.run(["true"], check=True)

    t0 = mono()
    threads = [threading.Thread(target=worker) for _ in range(SLOTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"elapsed": mono() - t0}


# -- Dramatiq (threads) ------------------------------------------------------------------


def dramatiq_run(b: Bench, n: int) -> dict[str, float]:
    """1 process x 8 threads; done when the broker's join (unacknowledged messages of the
    queue: queued or running) sees none."""
    os.environ["BENCH_REDIS_SOCKET"] = str(b.server.socket_path)
    from bench.peer_apps import dramatiq_app

    broker = dramatiq_app.broker
    proc = _start(
        b,
        [
            *_tool("dramatiq", "dramatiq"),
            "bench.peer_apps.dramatiq_app",
            "--processes",
            "1",
            "--threads",
            str(SLOTS),
            "--queues",
            QUEUE,
        ],
    )
    try:

        def enqueue(k: int) -> None:
            for _ in range(k):
                dramatiq_app.job.send()

        def joined() -> bool:
            return broker.do_qsize(QUEUE) == 0  # type: ignore[no-any-return]

        enqueue(WARMUP)
        _wait_for(joined, [proc], "dramatiq")
        t0 = mono()
        enqueue(n)
        t_enqueued = mono()
        _wait_for(joined, [proc], "dramatiq")
        return {"elapsed": mono() - t0, "enqueue_elapsed": t_enqueued - t0}
    finally:
        b.stop_proc(proc)
        broker.close()


# -- asyncio queues ------------------------------------------------------------------------


def saq_run(b: Bench, n: int) -> dict[str, float]:
    os.environ["BENCH_REDIS_SOCKET"] = str(b.server.socket_path)
    from bench.peer_apps import saq_app

    proc = _start(b, [*_tool("saq", "saq"), "bench.peer_apps.saq_app.settings", "--quiet"])
    try:

        def enqueue(k: int) -> None:
            async def go() -> None:
                queue = saq_app.make_queue()
                await queue.connect()
                try:
                    for _ in range(k):
                        await queue.enqueue("job")
                finally:
                    await queue.disconnect()

            asyncio.run(go())

        return _counted(b, [proc], enqueue, n, "saq")
    finally:
        b.stop_proc(proc)


def streaq_run(b: Bench, n: int) -> dict[str, float]:
    os.environ["BENCH_REDIS_SOCKET"] = str(b.server.socket_path)
    from bench.peer_apps import streaq_app

    proc = _start(b, [*_tool("streaq", "streaq"), "run", "bench.peer_apps.streaq_app:worker"])
    try:

        def enqueue(k: int) -> None:
            async def go() -> None:
                async with streaq_app.worker:
                    for _ in range(k):
                        await streaq_app.job.enqueue()

            asyncio.run(go())

        return _counted(b, [proc], enqueue, n, "streaq")
    finally:
        b.stop_proc(proc)


def taskiq_run(b: Bench, n: int) -> dict[str, float]:
    os.environ["BENCH_REDIS_SOCKET"] = str(b.server.socket_path)
    from bench.peer_apps import taskiq_app

    proc = _start(
        b,
        [
            *_tool("taskiq", "taskiq"),
            "worker",
            "bench.peer_apps.taskiq_app:broker",
            "--workers",
            "1",
            "--max-async-tasks",
            str(SLOTS),
            "--no-configure-logging",
        ],
    )
    try:

        def enqueue(k: int) -> None:
            async def go() -> None:
                await taskiq_app.broker.startup()
                try:
                    for _ in range(k):
                        await taskiq_app.job.kiq()
                finally:
                    await taskiq_app.broker.shutdown()

            asyncio.run(go())

        return _counted(b, [proc], enqueue, n, "taskiq")
    finally:
        b.stop_proc(proc)


#: The asyncio peers, by name: (module the bench extra installs, runner).
ASYNC_PEERS: dict[str, tuple[str, Callable[[Bench, int], dict[str, float]]]] = {
    "saq": ("saq", saq_run),
    "streaq": ("streaq", streaq_run),
    "taskiq": ("taskiq_redis", taskiq_run),
}


def measure_all(b: Bench, n: int) -> dict[str, Any]:
    """Every installed peer: jobs/s by name, and notes for the skipped or failed ones."""
    rates: dict[str, float] = {}
    notes: dict[str, str] = {}
    runs: list[tuple[str, str, Callable[[Bench, int], dict[str, float]]]] = [
        ("dramatiq", "dramatiq", dramatiq_run),
        *[(name, mod, fn) for name, (mod, fn) in ASYNC_PEERS.items()],
    ]
    for name, module, fn in runs:
        if not installed(module):
            notes[name] = "not installed (pip install -e '.[bench]')"
            continue
        try:
            result = fn(b, n)
        except Exception as exc:  # one peer failing must not hide the others
            notes[name] = f"failed: {type(exc).__name__}: {exc}"
            continue
        rates[name] = n / result["elapsed"]
    b.r.delete(DONE)
    return {"rates": rates, "notes": notes}
