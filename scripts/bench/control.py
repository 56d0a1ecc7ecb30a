"""Control latency: interrupt and kill of an agent in a round, against bare signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import trio

from bench.env import Bench, connect, mono, read_json_line
from bench.figures import INTERRUPT, KILL, Row
from bench.procfs import group_gone, is_python, proc_state


def run(b: Bench) -> list[Row]:
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
        INTERRUPT.row(
            "interrupt -> child stopped (max)",
            max(ms[0]),
            max(ms[2]),
            "os.killpg SIGSTOP",
            max(ms[0]) <= 100,
            {
                "samples_ms": [round(x, 2) for x in ms[0]],
                "api_call_returned_ms_max": round(max(calls["interrupt"]), 2),
                "method": method,
            },
        ),
        KILL.row(
            "kill -> process group gone (max)",
            max(ms[1]),
            max(ms[3]),
            "os.killpg SIGTERM+wait",
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
            found = re.search(r"round(?: \d+)? pid=(\d+) started", log.read_text())
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
            while proc_state(proc.pid) not in ("S", "R") or is_python(proc.pid):
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
