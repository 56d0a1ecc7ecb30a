"""Message latency: a PING sent by another process -> the agent's mailbox taking it."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import trio

from bench.env import CHILD, Bench, connect, mono, read_json_line
from bench.figures import LATENCY_P50, LATENCY_P99, Row, pct
from tinytown.model import MessageType
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.runtime.town_runtime import Runtime


def run(b: Bench) -> list[Row]:
    n = 200 if b.quick else 2000
    root = b.make_town("latency")
    with b.profiled("latency"):
        tt = trio.run(_tt_latency, root, n, b.env)
    base = _pingpong(b, n)
    cross = [x * 1e3 for x in tt["cross"]]
    same = [x * 1e3 for x in tt["latency"]]
    one_way = [x * 1e3 for x in base["one_way"]]
    details = {
        "samples": n,
        "send_call_ms_p50": round(statistics.median(tt["cross_send_call"]) * 1e3, 3),
        "in_process_ms_p50": round(pct(same, 0.5), 3),
        "in_process_ms_p99": round(pct(same, 0.99), 3),
        "in_process_send_call_ms_p50": round(statistics.median(tt["send_call"]) * 1e3, 3),
        "baseline_rtt_ms_p50": round(statistics.median(base["rtt"]) * 1e3, 3),
        "method": "town hosted in the bench process (Runtime), one idle agent; a second"
        " process sends PINGs with AgentHandle.send, one at a time; latency = start of the"
        " send call (there) -> the agent's mailbox taking it (here, Runtime.on_take),"
        " both on CLOCK_MONOTONIC. in_process: the same with the sender in the town's own process"
        " (like the REPL). Baseline: redis-py LPUSH in one process -> BLPOP returning in"
        " another (one way), on the same server.",
    }
    p50, p99 = pct(cross, 0.5), pct(cross, 0.99)
    b50, b99 = pct(one_way, 0.5), pct(one_way, 0.99)
    return [
        LATENCY_P50.row(
            "message latency p50", p50, b50, "redis-py LPUSH->BLPOP", p50 <= 2 * b50, details
        ),
        LATENCY_P99.row(
            "message latency p99",
            p99,
            b99,
            "redis-py LPUSH->BLPOP",
            p99 <= 1.0,
            {"max_ms": round(max(cross), 3)},
        ),
    ]


class _Takes:
    """What the runtime's ``on_take`` hook reports, for one agent and the supervisor.

    One message is in flight at a time, so the agent's first take after a send is that
    message, and the supervisor's next take is its pong: the sample is over.
    """

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.agent: list[float] = []  # when the agent took messages (one per sample)
        self.supervisor = 0  # takes of the supervisor (its pongs)
        self._changed = trio.Event()

    def __call__(self, agent_id: str, count: int) -> None:
        """The hook: runs in the runtime's trio thread, right after a take."""
        if count == 0:
            return
        if agent_id == self.agent_id:
            self.agent.append(mono())
        elif agent_id == SUPERVISOR_ID:
            self.supervisor += 1
        self._changed.set()

    async def until(self, check: Callable[[], bool]) -> None:
        with trio.fail_after(10):
            while not check():
                self._changed = trio.Event()
                await self._changed.wait()

    def mark(self) -> tuple[int, int]:
        """Where the counts stand before a send."""
        return len(self.agent), self.supervisor

    async def sample(self, mark: tuple[int, int]) -> float:
        """Wait for the agent's first take after ``mark`` and the supervisor's (the pong);
        return when the agent took its message."""
        agent, supervisor = mark
        await self.until(lambda: len(self.agent) > agent and self.supervisor > supervisor)
        return self.agent[agent]


async def _tt_latency(
    root: Path, n: int, env: dict[str, str], warmup: int = 20
) -> dict[str, list[float]]:
    town = await connect(root)
    latency: list[float] = []
    send_call: list[float] = []
    cross: list[float] = []
    cross_send_call: list[float] = []
    try:
        rt = Runtime(town)
        async with trio.open_nursery() as nursery:
            await nursery.start(rt.serve)
            handle = await town.spawn_agent("pinger", "true")
            await handle.wait(idle=True, timeout=30)
            takes = _Takes(handle.id)
            rt.on_take = takes
            for i in range(n + warmup):
                mark = takes.mark()
                t0 = mono()
                await handle.send(MessageType.PING)
                t1 = mono()
                received = await takes.sample(mark)
                if i >= warmup:
                    latency.append(received - t0)
                    send_call.append(t1 - t0)
                await trio.sleep(0.002)  # an idle town between samples
            # The same, sent through the API by another process (a `tt`-like client).
            proc = await trio.lowlevel.open_process(
                [sys.executable, str(CHILD), "sender", str(root), "pinger"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            assert proc.stdin is not None and proc.stdout is not None
            try:
                lines = _Lines(proc.stdout)
                await lines.next()  # ready
                for i in range(n + warmup):
                    mark = takes.mark()
                    await proc.stdin.send_all(b"go\n")
                    # The helper's reply (its t0) is read once the sample is over: reading
                    # it at once would compete with the town in this process's event loop.
                    received = await takes.sample(mark)
                    reply = json.loads(await lines.next())
                    if i >= warmup:
                        cross.append(received - reply["t0"])
                        cross_send_call.append(reply["t1"] - reply["t0"])
                    await trio.sleep(0.002)
                await proc.stdin.send_all(b"quit\n")
                with trio.move_on_after(10):
                    await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            rt.on_take = None
            rt.shutdown_requested.set()
    finally:
        await town.aclose()
    return {
        "latency": latency,
        "send_call": send_call,
        "cross": cross,
        "cross_send_call": cross_send_call,
    }


class _Lines:
    """Lines from a trio receive stream (a helper's stdout)."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buf = b""

    async def next(self) -> bytes:
        with trio.fail_after(30):
            while b"\n" not in self.buf:
                chunk = await self.stream.receive_some(4096)
                if not chunk:
                    raise RuntimeError("helper exited without answering")
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line


def _pingpong(b: Bench, n: int, warmup: int = 20) -> dict[str, list[float]]:
    r = b.r
    r.delete("bench:ping", "bench:pong")
    echo = b.child("echo", str(b.server.socket_path))
    try:
        read_json_line(echo)
        one_way, rtt = [], []
        for i in range(n + warmup):
            t0 = mono()
            r.lpush("bench:ping", "x")
            _, value = r.blpop(["bench:pong"]) or (None, b"nan")  # no timeout: never None
            t2 = mono()
            if i >= warmup:
                one_way.append(float(value) - t0)
                rtt.append(t2 - t0)
            time.sleep(0.002)  # the same pause as between Tinytown's samples
        r.lpush("bench:ping", "stop")
        echo.wait(10)
    finally:
        b.stop_proc(echo)
    return {"one_way": one_way, "rtt": rtt}
