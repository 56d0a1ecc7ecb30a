"""Broadcast: one message into every agent's inbox, against a bare MULTI of RPUSHes."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import trio

from bench.env import Bench, connect, mono
from bench.figures import BROADCAST, Row
from tinytown.model import Informational, dumps


def run(b: Bench) -> list[Row]:
    n, reps = (200, 3) if b.quick else (1000, 7)
    root = b.make_town("broadcast")
    with b.profiled("broadcast"):
        tt = trio.run(_tt_broadcast, root, n, reps)
    base = _bare_broadcast(b, n, reps, tt["payload"])
    p50, base50 = statistics.median(tt["times"]) * 1e3, statistics.median(base) * 1e3
    details = {
        "agents": n,
        "repetitions": reps,
        "register_s": round(tt["register"], 3),
        "method": "agents registered (not running); MessageService.broadcast timed (one atomic"
        " script call), then a pipeline of LLEN confirms every inbox has it. Baseline: one"
        " MULTI/EXEC pipeline of RPUSH+PUBLISH per inbox with redis-py.",
    }
    return [
        BROADCAST.row(
            f"broadcast to {n} agents",
            p50,
            base50,
            "redis-py MULTI RPUSH+PUBLISH",
            p50 <= 100,
            details,
        ),
    ]


async def _tt_broadcast(root: Path, n: int, reps: int) -> dict[str, Any]:
    async with await connect(root) as town:
        t0 = mono()
        ids = [(await town.agents.spawn(f"a{i}", "true")).id for i in range(n)]
        register = mono() - t0
        times = []
        for rep in range(1, reps + 1):
            t0 = mono()
            message, reached = await town.messages.broadcast(Informational(f"all hands {rep}"))
            times.append(mono() - t0)
            counts = await town.redis.pipeline([["LLEN", town.keys.inbox(i)] for i in ids])
            if reached != n or any(c != rep for c in counts):
                raise RuntimeError(f"broadcast reached {reached}, inboxes {set(counts)}")
        return {"times": times, "register": register, "payload": dumps(message)}


def _bare_broadcast(b: Bench, n: int, reps: int, payload: str) -> list[float]:
    r = b.r
    keys = [f"bench:bc:{i}" for i in range(n)]
    r.delete(*keys)
    times = []
    for _ in range(reps):
        t0 = mono()
        pipe = r.pipeline(transaction=True)
        for key in keys:
            pipe.rpush(key, payload)
            pipe.publish("bench:wake", key)
        pipe.execute()
        times.append(mono() - t0)
    r.delete(*keys)
    return times
