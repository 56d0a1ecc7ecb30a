"""Task throughput: tasks through the backlog to idle agents, against the peer job queues
(RQ, Dramatiq, the fastest asyncio queue: bench/peers.py) and the spawn limit."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
import trio

from bench import SCRIPTS, floor, peers
from bench.env import Bench, connect, mono, wait_all_idle
from bench.figures import TASKS, TASKS_LIMIT, Row
from tinytown.services.config import TownConfig


def run(b: Bench) -> list[Row]:
    n, workers = (48, 8) if b.quick else (2000, 8)
    root = b.make_town("tasks")
    # As many parallel rounds as agents: 8 slots, like every peer (the default cap,
    # 2 x CPUs, would run 4 here).
    config = TownConfig.load(root)
    config.data["runtime"]["max_parallel_rounds"] = workers
    config.save()
    # The RQ workers start first (their imports overlap the town's start-up) and are idle,
    # blocked in BLMOVE, while the town is measured.
    have_rq = importlib.util.find_spec("rq") is not None  # the bench extra
    rq_procs = _start_rq_workers(b, workers) if have_rq else []
    try:
        ids = trio.run(_spawn_many, root, [f"w{i}" for i in range(workers)], "true")
        host = b.start_host(root, how="bare")
        try:
            if have_rq:
                _wait_rq_workers(b, rq_procs)
            with b.profiled("tasks"):
                tt = trio.run(_tt_tasks, root, ids, n, "backlog")
            batched = None if b.quick else trio.run(_tt_tasks, root, ids, n, "assign")
        finally:
            b.stop_proc(host)
        rq = _rq_tasks(b, n) if have_rq else None
    finally:
        for proc in rq_procs:
            b.stop_proc(proc)
    limit = n / peers.spawn_limit(n)["elapsed"]
    lean = floor.run(b, n)
    others = peers.measure_all(b, n)
    rates: dict[str, float] = dict(others["rates"])
    if rq:
        rates["rq"] = n / rq["elapsed"]
    else:
        others["notes"]["rq"] = "not installed (pip install -e '.[bench]')"
    rate = n / tt["elapsed"]
    best = max(rates, key=rates.__getitem__) if rates else None
    details: dict[str, Any] = {
        "tasks": n,
        "slots": workers,
        "tt_cli_rounds": tt["rounds"],
        "tt_submit_s": round(tt["submit_elapsed"], 3),
        "peers_per_s": {name: round(r, 1) for name, r in sorted(rates.items())},
        "peers_skipped": others["notes"],
        "spawn_limit_per_s": round(limit, 1),
        "floor_round_per_s": round(n / lean["elapsed"], 1),
        "floor_round_cpu_ms": round(lean["cpu_per_round"] * 1e3, 3),
        "rq_enqueue_s": round(rq["enqueue_elapsed"], 3) if rq else None,
        "method": "N tasks put in the backlog with BacklogService.add (one loop); the running"
        f" town (another process, bare Runtime, runtime.max_parallel_rounds = {workers})"
        f" hands them to {workers} idle agents whose CLI"
        " is `true` (one task per round, like one job per worker); done when the agents'"
        " tasks_completed grew by N. Peers, each with the same N jobs and 8 slots, the job"
        " spawning `true` and waiting: RQ (8 `rq worker` processes, a forked work horse per"
        " job; done = Finished+Failed registries), Dramatiq (1 process x 8 threads; done ="
        " no unacknowledged message), SAQ, streaQ, taskiq ListQueueBroker (1 process, 8"
        " concurrent asyncio jobs; done = a counter INCRed by each job). Spawn limit: 8"
        " threads running subprocess.run(['true']) N times, no queue. floor_round: the"
        " leanest recorded round in one trio process (bench/floor.py: a take, a start"
        " script, `true` spawned as a round spawns it, a finish script; 8 slots)."
        " assign_batched (not in --quick): the same N tasks given with TaskService.assign"
        " round-robin; an agent then runs its CLI once for every task it took (up to 50).",
    }
    if batched is not None:
        details["tt_assign_batched_per_s"] = round(n / batched["elapsed"], 1)
        details["tt_assign_batched_rounds"] = batched["rounds"]
    label = f"task throughput ({workers} agents, `true`)"
    return [
        TASKS.row(
            label,
            rate,
            rates[best] if best else None,
            f"fastest peer: {PEER_LABELS[best]}"
            if best
            else "no peer installed (pip install -e '.[bench]')",
            rate >= rates[best] if best else None,
            details,
        ),
        TASKS_LIMIT.row(
            "task throughput vs spawn limit",
            rate,
            limit,
            f"{workers} threads spawning `true`",
            rate >= 0.5 * limit,
            {"spawn_limit_per_s": round(limit, 1)},
        ),
    ]


PEER_LABELS = {
    "rq": "RQ, 8 worker processes",
    "dramatiq": "Dramatiq, 1 process x 8 threads",
    "saq": "SAQ, 8 asyncio slots",
    "streaq": "streaQ, 8 asyncio slots",
    "taskiq": "taskiq ListQueueBroker, 8 asyncio slots",
}


async def _spawn_many(root: Path, names: list[str], cli: str) -> list[str]:
    async with await connect(root) as town:
        return [(await town.agents.spawn(name, cli)).id for name in names]


async def _tt_tasks(root: Path, ids: list[str], n: int, how: str) -> dict[str, Any]:
    """Submit n tasks (``backlog``: to the backlog; ``assign``: round-robin to the agents)
    and wait until the agents' tasks_completed counters grew by n."""
    async with await connect(root) as town:
        await wait_all_idle(town, ids, 30)
        keys = [town.keys.agent(i) for i in ids]

        async def counters() -> tuple[int, int]:
            agents = [json.loads(r) for r in await town.redis.execute("MGET", *keys)]
            return (
                sum(a["tasks_completed"] for a in agents),
                sum(a["rounds_completed"] for a in agents),
            )

        done0, rounds0 = await counters()
        t0 = mono()
        for i in range(n):
            if how == "backlog":
                await town.backlog.add(f"bench task {i}")
            else:
                await town.tasks.assign(ids[i % len(ids)], f"bench task {i}")
        t_submitted = mono()
        with trio.fail_after(600):
            while (counts := await counters())[0] - done0 < n:
                await trio.sleep(POLL)
        t_done = mono()
    return {
        "elapsed": t_done - t0,
        "submit_elapsed": t_submitted - t0,
        "rounds": counts[1] - rounds0,
    }


RQ_QUEUE = "bench"
#: Completion polling of the task figures: rare enough not to steal CPU from the workers.
POLL = 0.02


def _start_rq_workers(b: Bench, workers: int) -> list[subprocess.Popen[bytes]]:
    """``rq worker`` processes (the default rq.Worker: a forked work horse per job)."""
    url = "unix://" + str(b.server.socket_path)
    rq_bin = Path(sys.executable).parent / "rq"
    argv = [str(rq_bin)] if rq_bin.exists() else [sys.executable, "-m", "rq.cli"]
    env = dict(b.env)
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPTS), env.get("PYTHONPATH", "")])
    return [
        b.popen(
            [*argv, "worker", "-u", url, "-q", "-n", f"bench-{os.getpid()}-{i}", RQ_QUEUE],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(workers)
    ]


def _wait_rq_workers(b: Bench, procs: list[subprocess.Popen[bytes]]) -> None:
    from rq import Queue, Worker

    queue = Queue(RQ_QUEUE, connection=b.r)
    deadline = mono() + 60
    while Worker.count(connection=b.r, queue=queue) < len(procs):
        if mono() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError("RQ workers did not start")
        time.sleep(0.02)


def _rq_tasks(b: Bench, n: int) -> dict[str, float]:
    import bench_rq_job
    from rq import Queue
    from rq.registry import FailedJobRegistry, FinishedJobRegistry

    conn = redis.Redis(unix_socket_path=str(b.server.socket_path))
    try:
        queue = Queue(RQ_QUEUE, connection=conn)
        finished = FinishedJobRegistry(queue=queue)
        failed = FailedJobRegistry(queue=queue)
        t0 = mono()
        for _ in range(n):
            queue.enqueue(bench_rq_job.run_true)
        t_enqueued = mono()
        deadline = mono() + 600
        while finished.count + failed.count < n:
            if mono() > deadline:
                raise RuntimeError("RQ did not finish its jobs")
            time.sleep(POLL)
        t_done = mono()
        if failed.count:
            raise RuntimeError(f"{failed.count} RQ jobs failed")
    finally:
        conn.close()
    return {"elapsed": t_done - t0, "enqueue_elapsed": t_enqueued - t0}
