"""Message throughput: PINGs sent, taken, answered and acknowledged, against a bare queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from bench import floor
from bench.env import Bench, connect, mono, spawn_one
from bench.figures import THROUGHPUT, Row
from tinytown.model import Message, Ping, dumps
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.runtime.mailbox import TAKE_BATCH

STALL = 0.01  # s without progress before the throughput drain sends a wake-up


def run(b: Bench) -> list[Row]:
    n = 1000 if b.quick else 20000
    root = b.make_town("throughput")
    agent_id = trio.run(spawn_one, root, "sink")
    host = b.start_host(root, how="bare")
    try:
        with b.profiled("throughput"):
            tt = trio.run(_tt_throughput, root, agent_id, n)
    finally:
        b.stop_proc(host)
    base = _bare_queue(b, n)
    lean = floor.sends(b, n, tt["senders"])
    rate = n / tt["elapsed"]
    details = {
        "messages": n,
        "senders": tt["senders"],
        "api_send_rate_per_s": round(n / tt["send_elapsed"]),
        "runtime_only_rate_per_s": round(tt["runtime_only_rate"]),
        "floor_send_per_s": round(n / lean["elapsed"]),
        "floor_send_cpu_us": round(lean["cpu_per_send"] * 1e6, 1),
        "liveness_probe": f"{tt['probe']} pings in the inbox + 1 wake-up: {tt['stranded']}"
        " still in the inbox after 0.3 s",
        "stall_kicks": tt["kicks"],
        "stall_kicks_runtime_only": tt["kicks_runtime_only"],
        "method": "PINGs sent with MessageService.send by concurrent tasks in the bench process;"
        " the town runs in another process (bare Runtime); done when the agent's inbox and"
        " in-flight list and the supervisor's are empty (every ping taken, answered and acked,"
        " every pong acked). runtime_only: the same N pings pushed raw, then one wake-up."
        " floor_send: the leanest send in one trio process (bench/floor.py: the same"
        " senders, one envelope and one push-and-publish script per message).",
    }
    return [
        THROUGHPUT.row(
            "message throughput (acked)",
            rate,
            base,
            "pipelined LPUSH+LMOVE+LREM",
            rate >= 20_000 and rate >= 0.35 * base,
            details,
        ),
    ]


async def _tt_throughput(root: Path, agent_id: str, n: int, senders: int = 16) -> dict[str, Any]:
    async with await connect(root) as town:
        await town.agents.wait(agent_id, idle=True, timeout=30)
        k = town.keys
        lists = [
            k.inbox(agent_id),
            k.inflight(agent_id),
            k.inbox(SUPERVISOR_ID),
            k.inflight(SUPERVISOR_ID),
        ]

        kicks = [0]

        async def drained() -> float:
            """Poll until all four lists are empty. A list that makes no progress for
            STALL seconds gets a wake-up PUBLISH (counted in ``kicks``): the agent actor
            sleeps after a full TAKE batch even when more messages wait (see
            docs/performance.md), and without the kick the bench would hang."""
            last: list[int] = []
            since = mono()
            with trio.fail_after(120):
                while True:
                    counts = await town.redis.pipeline([["LLEN", key] for key in lists])
                    if not any(counts):
                        return mono()
                    if counts != last:
                        last, since = counts, mono()
                    elif mono() - since > STALL:
                        kicks[0] += 1
                        await town.redis.execute("PUBLISH", k.wake, agent_id)
                        await town.redis.execute("PUBLISH", k.wake, SUPERVISOR_ID)
                        since = mono()
                    await trio.sleep(0.001)

        async def sender(count: int) -> None:
            for _ in range(count):
                await town.messages.send(agent_id, Ping())

        t0 = mono()
        async with trio.open_nursery() as nursery:
            for i in range(senders):
                nursery.start_soon(sender, n // senders + (1 if i < n % senders else 0))
        t_sent = mono()
        t_done = await drained()
        kicks_e2e, kicks[0] = kicks[0], 0

        # Liveness check: more than one TAKE batch in the inbox and a single wake-up.
        probe = 2 * TAKE_BATCH + 20
        raws = [dumps(Message.new(SUPERVISOR_ID, agent_id, Ping())) for _ in range(probe)]
        await town.redis.execute("RPUSH", k.inbox(agent_id), *raws)
        await town.redis.execute("PUBLISH", k.wake, agent_id)
        await trio.sleep(0.3)
        stranded = await town.redis.execute("LLEN", k.inbox(agent_id))
        await drained()
        kicks[0] = 0

        # The runtime alone: N pings already in the inbox, one wake-up.
        raws = [dumps(Message.new(SUPERVISOR_ID, agent_id, Ping())) for _ in range(n)]
        for i in range(0, n, 1000):
            await town.redis.execute("RPUSH", k.inbox(agent_id), *raws[i : i + 1000])
        t1 = mono()
        await town.redis.execute("PUBLISH", k.wake, agent_id)
        t_done2 = await drained()
    return {
        "elapsed": t_done - t0,
        "send_elapsed": t_sent - t0,
        "senders": senders,
        "runtime_only_rate": n / (t_done2 - t1),
        "kicks": kicks_e2e,
        "stranded": stranded,
        "probe": probe,
        "kicks_runtime_only": kicks[0],
    }


def _bare_queue(b: Bench, n: int, batch: int = 100) -> float:
    """Messages/s for sent (LPUSH), taken (LMOVE to an in-flight list), acked (LREM)."""
    r = b.r
    r.delete("bench:q", "bench:inflight")
    payload = dumps(Message.new(SUPERVISOR_ID, SUPERVISOR_ID, Ping()))
    t0 = mono()
    for start in range(0, n, batch):
        m = min(batch, n - start)
        pipe = r.pipeline(transaction=False)
        for _ in range(m):
            pipe.lpush("bench:q", payload)
        pipe.execute()
        pipe = r.pipeline(transaction=False)
        for _ in range(m):
            pipe.lmove("bench:q", "bench:inflight", "RIGHT", "LEFT")
        taken = pipe.execute()
        pipe = r.pipeline(transaction=False)
        for raw in taken:
            pipe.lrem("bench:inflight", 1, raw)
        pipe.execute()
    elapsed = mono() - t0
    assert r.llen("bench:q") == 0 and r.llen("bench:inflight") == 0
    return n / elapsed
