"""Spawning many agents, then the idle town's CPU and memory per agent."""

from __future__ import annotations

import json
import time
from pathlib import Path

import trio

from bench.env import Bench, connect, mono, read_json_line, wait_all_idle
from bench.figures import IDLE_CPU, RSS_PER_AGENT, SPAWN, Row
from bench.procfs import cpu_seconds, rss_kib


def run(b: Bench) -> list[Row]:
    n, window = (100, 3.0) if b.quick else (1000, 10.0)
    root = b.make_town("spawn")
    floor = b.child("floor", str(n), b.server.url)
    host = b.start_host(root, how="tt")
    try:
        floor_mem = read_json_line(floor)
        time.sleep(0.5)  # settle after start
        rss0 = rss_kib(host.pid)
        with b.profiled("spawn"):
            tt = trio.run(_tt_spawn, root, n)
        time.sleep(0.5)
        rss1 = rss_kib(host.pid)
        # idle CPU: the town and the floor side by side over the same window
        redis_pid = int((b.tmp / ".tt" / "redis.pid").read_text())
        c0 = (cpu_seconds(host.pid), cpu_seconds(floor.pid), cpu_seconds(redis_pid))
        t0 = mono()
        time.sleep(window)
        elapsed = mono() - t0
        c1 = (cpu_seconds(host.pid), cpu_seconds(floor.pid), cpu_seconds(redis_pid))
    finally:
        b.stop_proc(host)
        b.stop_proc(floor)
    cpu = [(after - before) / elapsed * 100 for before, after in zip(c0, c1, strict=True)]
    base_spawn = _bare_register(b, n)
    per_agent = (rss1 - rss0) / n
    floor_per_agent = (floor_mem["rss_after"] - floor_mem["rss_before"]) / n
    spawn_details = {
        "agents": n,
        "spawn_calls_s": round(tt["calls"], 3),
        "method": "town run by `tt run --no-repl` in its own process; AgentService.spawn called"
        " N times (one loop) from the bench process; done when one MGET sees every agent"
        " idle. Baseline: N sequential redis-py round trips writing a record + index entry.",
    }
    cpu_details = {
        "window_s": round(elapsed, 2),
        "redis_server_cpu_pct": round(cpu[2], 3),
        "method": "CPU time of every thread of the town process (/proc/PID/task/*/schedstat)"
        " over the window, as % of one core. Baseline: a trio process with N parked tasks"
        " and one SUBSCRIBE connection, over the same window.",
    }
    mem_details = {
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "method": "VmRSS of the town process after N agents are idle minus before the"
        " spawns, / N. Baseline: the same for N parked trio tasks holding a small dict.",
    }
    return [
        SPAWN.row(
            f"spawn {n} agents -> all idle",
            tt["elapsed"],
            base_spawn,
            f"{n} redis-py record writes",
            tt["elapsed"] <= 3.0,
            spawn_details,
        ),
        IDLE_CPU.row(
            f"idle CPU, town of {n}",
            cpu[0],
            cpu[1],
            f"{n} parked trio tasks",
            cpu[0] <= 1.0,
            cpu_details,
        ),
        RSS_PER_AGENT.row(
            "resident memory per agent",
            per_agent,
            floor_per_agent,
            "parked trio task",
            per_agent <= 100,
            mem_details,
        ),
    ]


async def _tt_spawn(root: Path, n: int) -> dict[str, float]:
    async with await connect(root) as town:
        t0 = mono()
        ids = [(await town.agents.spawn(f"s{i}", "true")).id for i in range(n)]
        t_calls = mono()
        t_idle = await wait_all_idle(town, ids, 120, step=0.02)
    return {"elapsed": t_idle - t0, "calls": t_calls - t0}


def _bare_register(b: Bench, n: int) -> float:
    r = b.r
    record = json.dumps({"id": "x" * 36, "name": "n", "state": "starting", "pad": "p" * 300})
    t0 = mono()
    for i in range(n):
        pipe = r.pipeline(transaction=True)
        pipe.set(f"bench:agent:{i}", record)
        pipe.hset("bench:agents", f"n{i}", str(i))
        pipe.execute()
    elapsed = mono() - t0
    r.delete("bench:agents", *[f"bench:agent:{i}" for i in range(n)])
    return elapsed
