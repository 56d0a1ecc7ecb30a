"""How cost grows with the town: 100, 1,000 and 10,000 agents (--quick: 20 and 100).

For each size, one town hosted by a bare Runtime in its own process: spawn N agents
(CLI ``true``) with one ``spawn_many`` call (what ``tt spawn NAME --count N`` does) and
wait until all are idle; the host's resident memory per agent; idle
CPU of the host and of redis-server over a window (after settling 0.5 s + 1 s per 1,000
agents); ``tt status`` wall time; backlog
dispatch latency with every agent idle (a task added -> an agent holds it); broadcast of
a PING to every agent (the call; then until every agent has taken it). Each figure's
value is the one at the largest size, its baseline the one at the smallest; the details
give every size and the growth exponent between sizes (log of the value ratio over log
of the size ratio: 0 = flat, 1 = linear, 2 = quadratic).
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from bench.env import Bench, connect, mono
from bench.figures import (
    SCALE_BROADCAST,
    SCALE_DISPATCH,
    SCALE_IDLE_CPU,
    SCALE_RSS,
    SCALE_SPAWN,
    SCALE_STATUS,
    Figure,
    Row,
)
from bench.procfs import cpu_seconds, rss_kib
from tinytown.model import Ping

#: (figure, the measurement's key, label, target check at the largest size)
MEASURES: list[tuple[Figure, str, str]] = [
    (SCALE_SPAWN, "spawn_s", "spawn {n} -> all idle"),
    (SCALE_IDLE_CPU, "idle_cpu_pct", "idle CPU, town of {n}"),
    (SCALE_RSS, "rss_per_agent_kib", "resident memory per agent, {n}"),
    (SCALE_BROADCAST, "broadcast_ms", "broadcast PING to {n}"),
    (SCALE_DISPATCH, "dispatch_ms", "backlog dispatch, {n} idle"),
    (SCALE_STATUS, "tt_status_ms", "`tt status`, town of {n}"),
]
LIMITS = {"spawn_s": 10.0, "idle_cpu_pct": 1.0, "rss_per_agent_kib": 20.0, "tt_status_ms": 1000.0}


def run(b: Bench) -> list[Row]:
    planned = [20, 100] if b.quick else [100, 1000, 10000]
    curve: dict[int, dict[str, float]] = {}
    extra: dict[int, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for n in planned:
        try:
            curve[n], extra[n] = _one_size(b, n)
        except Exception as exc:  # a size that fails must not hide the smaller ones
            errors[str(n)] = f"{type(exc).__name__}: {exc}"
            _say(f"scale {n}: failed: {errors[str(n)]}")
            break
    sizes = sorted(curve)
    if not sizes:
        raise RuntimeError(f"no size could be measured: {errors}")
    small, large = sizes[0], sizes[-1]
    rows = []
    for figure, key, label in MEASURES:
        values = {n: curve[n][key] for n in sizes}
        exponents = {
            f"{a}->{c}": _exponent(values[a], values[c], a, c) for a, c in itertools.pairwise(sizes)
        }
        limit = LIMITS.get(key)
        rows.append(
            figure.row(
                label.format(n=f"{large:,}"),
                values[large],
                values[small],
                f"the same at {small} agents",
                values[large] <= limit if limit is not None else None,
                {
                    "by_agents": {str(n): round(v, 4) for n, v in values.items()},
                    "growth_exponent": exponents,
                    **({"failed_sizes": errors} if errors else {}),
                    **({"per_size": {str(n): extra[n] for n in sizes}} if key == "spawn_s" else {}),
                    **({"method": __doc__} if key == "spawn_s" else {}),
                },
            )
        )
    return rows


def _exponent(v1: float, v2: float, n1: int, n2: int) -> float | None:
    if v1 <= 0 or v2 <= 0:
        return None
    return round(math.log(v2 / v1) / math.log(n2 / n1), 2)


def _say(text: str) -> None:
    """Progress on stderr (a size of 10,000 takes minutes)."""
    print(f"    {text}", file=sys.stderr, flush=True)


def _one_size(b: Bench, n: int) -> tuple[dict[str, float], dict[str, Any]]:
    root = b.make_town(f"scale{n}")
    host = b.start_host(root, how="bare")
    redis_pid = int((b.tmp / ".tt" / "redis.pid").read_text())
    patience = max(60.0, n * 0.1)  # seconds any one step may take before it is an error
    try:
        time.sleep(0.3)
        rss0 = rss_kib(host.pid)
        with b.profiled(f"scale{n}-spawn"):
            spawn = trio.run(_spawn_all, root, n, patience)
        _say(f"scale {n}: spawned, all idle after {spawn['elapsed']:.1f} s")
        # The host finishes the spawns' tail work (requests, events) after the records say
        # idle: settle first, so the window sees the idle town, not the end of the spawn.
        time.sleep(0.5 + n / 1000)
        rss1 = rss_kib(host.pid)
        window = 3.0 if b.quick else 10.0
        c0 = (cpu_seconds(host.pid), cpu_seconds(redis_pid))
        t0 = mono()
        time.sleep(window)
        elapsed = mono() - t0
        c1 = (cpu_seconds(host.pid), cpu_seconds(redis_pid))
        status = _tt_status(b, root, 1 if b.quick else 3)
        _say(f"scale {n}: tt status {status:.0f} ms")
        dispatch = trio.run(_dispatch, root, spawn["ids"], 2 if b.quick else 5, patience)
        _say(f"scale {n}: dispatch {[round(x * 1e3, 1) for x in dispatch]} ms")
        broadcast = trio.run(_broadcast, root, spawn["ids"], patience)
        _say(f"scale {n}: broadcast {broadcast['call'] * 1e3:.1f} ms")
    finally:
        b.stop_proc(host)
    cpu = [(after - before) / elapsed * 100 for before, after in zip(c0, c1, strict=True)]
    values = {
        "spawn_s": spawn["elapsed"],
        "idle_cpu_pct": cpu[0],
        "rss_per_agent_kib": (rss1 - rss0) / n,
        "broadcast_ms": broadcast["call"] * 1e3,
        "dispatch_ms": statistics.median(dispatch) * 1e3,
        "tt_status_ms": status,
    }
    extra = {
        "spawn_calls_s": round(spawn["calls"], 3),
        "redis_server_idle_cpu_pct": round(cpu[1], 3),
        "rss_kib_before_after": [rss0, rss1],
        "dispatch_ms_samples": [round(x * 1e3, 2) for x in dispatch],
        "broadcast_all_taken_s": round(broadcast["taken"], 3),
    }
    return values, extra


async def _spawn_all(root: Path, n: int, patience: float) -> dict[str, Any]:
    async with await connect(root) as town:
        t0 = mono()
        # The product's way to create many agents (`tt spawn NAME --count N`, spawn_many).
        agents = await town.agents.spawn_many([f"s{i}" for i in range(n)], "true")
        ids = [a.id for a in agents]
        t_calls = mono()
        _say(f"scale {n}: spawn_many of {n} took {t_calls - t0:.1f} s")
        await _wait_idle(town, ids, patience)
        return {"elapsed": mono() - t0, "calls": t_calls - t0, "ids": ids}


async def _wait_idle(town: Any, ids: list[str], timeout: float) -> None:
    """Poll (one MGET of the agents not yet seen idle) until every one is idle. Every
    50 ms: at 10,000 agents one poll moves ~10 MB, and polling every 20 ms took a
    good part of the two cores the host needs."""
    pending = list(ids)
    with trio.fail_after(timeout):
        while pending:
            raws = await town.redis.execute("MGET", *[town.keys.agent(i) for i in pending])
            pending = [i for i, r in zip(pending, raws, strict=True) if not _idle(r)]
            if pending:
                await trio.sleep(0.05)


def _idle(raw: str | None) -> bool:
    # The records are compact JSON: a substring test, not 10,000 json.loads per poll.
    return raw is not None and '"state":"idle"' in raw


def _tt_status(b: Bench, root: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = mono()
        done = subprocess.run([*b.tt_argv(), "status"], cwd=root, env=b.env, capture_output=True)
        times.append(mono() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"tt status failed: {done.stderr.decode()[-300:]}")
    return statistics.median(times) * 1e3


async def _dispatch(root: Path, ids: list[str], samples: int, patience: float) -> list[float]:
    """A task added to the backlog -> its record says an agent holds it (polled every
    0.5 ms); then wait until it completed and every agent is idle again."""
    out = []
    async with await connect(root) as town:
        for i in range(samples):
            t0 = mono()
            task = await town.backlog.add(f"scale probe {i}")
            key = town.keys.task(task.id)
            with trio.fail_after(patience):
                while json.loads(await town.redis.execute("GET", key))["state"] == "pending":
                    await trio.sleep(0.0005)
            out.append(mono() - t0)
            with trio.fail_after(patience):
                while json.loads(await town.redis.execute("GET", key))["state"] != "completed":
                    await trio.sleep(0.01)
            await _wait_idle(town, ids, patience)
    return out


async def _broadcast(root: Path, ids: list[str], patience: float) -> dict[str, float]:
    """The broadcast call, then until every inbox is empty (each agent took its PING)."""
    async with await connect(root) as town:
        t0 = mono()
        _, reached = await town.messages.broadcast(Ping())
        t_call = mono()
        if reached != len(ids):
            raise RuntimeError(f"broadcast reached {reached} of {len(ids)}")
        keys = [town.keys.inbox(i) for i in ids]
        with trio.fail_after(patience):
            while any(await town.redis.pipeline([["LLEN", k] for k in keys])):
                await trio.sleep(0.01)
        return {"call": t_call - t0, "taken": mono() - t0}
