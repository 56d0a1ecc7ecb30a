"""What ``tt top`` costs on a big, busy town (docs/dashboard.md). A measurement, not a
test: tests/repl/test_top_bench.py runs it small, checking that it works, never a timing.

Run by hand (needs tmux):

    python scripts/bench_top.py --agents 1000 --rate 50 --seconds 30

It makes a town of N agents (spawned through the services, no runtime), opens ``tt top``
in a tmux window of 200x60, and for S seconds changes agents' states (interrupt/resume,
recorded directly: each one an event) at R per second and appends a line to the logs of
the 60 agents on screen at the same rate. It reports the CPU time ``tt top`` used (from
/proc, user + system) idle and under that churn, the frames it drew per second (it
writes them to ``$TT_TOP_STATS`` on leaving) and a text capture of the screen.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from tinytown.services.town import Town


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def make_town(root: Path, agents: int) -> None:
    town = await Town.init(root, "busy")
    town.config.data["agent_clis"] = {"idle": {"command": sys.executable}}  # never run
    town.config.data["default_cli"] = "idle"
    town.config.save()
    try:
        for n in range(agents):
            await town.spawn_agent(f"agent{n:04d}", role="worker" if n % 3 else "tester")
    finally:
        await town.aclose()


async def churn(root: Path, seconds: float, rate: float, agents: int) -> int:
    """Change agents' states and write to the visible agents' logs; returns the changes."""
    town = await Town.connect(root)
    logs = root / ".tt" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    changes = 0
    try:
        ids = [a.id for a in await town.agents.list()]
        paused: set[str] = set()
        deadline = trio.current_time() + seconds
        n = 0
        while trio.current_time() < deadline:
            agent_id = ids[(n * 7919) % len(ids)]
            if agent_id in paused:
                await town.lifecycle.resume(agent_id)
                paused.discard(agent_id)
            else:
                await town.lifecycle.interrupt(agent_id)
                paused.add(agent_id)
            changes += 1
            with (logs / f"agent{n % min(60, agents):04d}.log").open("a") as fh:
                fh.write(f"step {n}: compiling module {n % 97}\n")
            n += 1
            await trio.sleep(1 / rate)
    finally:
        await town.aclose()
    return changes


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def measure(
    root: Path,
    agents: int,
    rate: float,
    seconds: float,
    size: tuple[int, int] = (200, 60),
    idle: float = 10.0,
) -> dict:
    """Open ``tt top`` in tmux on the town at ``root`` and measure it under churn."""
    session = f"tttop{os.getpid()}"
    stats = root / "stats"
    command = f"exec env TT_TOP_STATS={stats} {sys.executable} -m tinytown top"
    columns, rows = (str(n) for n in size)
    tmux("new-session", "-d", "-s", session, "-x", columns, "-y", rows, "-c", str(root), command)
    try:
        pid = int(tmux("list-panes", "-t", session, "-F", "#{pane_pid}").split()[0])
        deadline = time.monotonic() + 30
        while f"agents {agents}" not in tmux("capture-pane", "-p", "-t", session):
            assert time.monotonic() < deadline, tmux("capture-pane", "-p", "-t", session)
            time.sleep(0.2)
        time.sleep(1.5)

        def sample() -> tuple[float, float, int, float]:
            """(now, the dashboard's clock, its frames by then, its CPU seconds); the
            stats file is rewritten every second: frames per second use its clock."""
            drawn = dict(line.split() for line in stats.read_text().splitlines())
            return time.monotonic(), float(drawn["seconds"]), int(drawn["frames"]), cpu_seconds(pid)

        t0, s0, frames0, cpu0 = sample()
        time.sleep(idle)
        t1, s1, frames1, cpu1 = sample()
        changes = trio.run(churn, root, seconds, rate, agents)
        t2, s2, frames2, cpu2 = sample()
        screen = tmux("capture-pane", "-p", "-t", session)
        tmux("send-keys", "-t", session, "q")
        return {
            "agents": agents,
            "idle_cpu": (cpu1 - cpu0) / (t1 - t0),
            "idle_frames_per_s": (frames1 - frames0) / (s1 - s0),
            "busy_cpu": (cpu2 - cpu1) / (t2 - t1),
            "busy_frames_per_s": (frames2 - frames1) / (s2 - s1),
            "changes_per_s": changes / (t2 - t1),
            "screen": screen,
        }
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def run(
    agents: int,
    rate: float,
    seconds: float,
    size: tuple[int, int] = (200, 60),
    idle: float = 10,
    root: Path | None = None,
) -> dict:
    """Measure in a new town at ``root`` (default: a new temp dir, removed after); the
    town's Redis is stopped at the end. TT_HOME defaults to a folder inside the town."""
    root = root or Path(tempfile.mkdtemp(prefix="tt-top-load-"))
    os.environ.setdefault("TT_HOME", str(root / "home"))
    try:
        trio.run(make_town, root, agents)
        return measure(root, agents, rate, seconds, size, idle)
    finally:
        if "REDIS_URL" not in os.environ:
            subprocess.run([sys.executable, "-m", "tinytown", "down"], cwd=root,
                           capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="state changes per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", default="200x60", help="the terminal: COLUMNSxROWS")
    args = parser.parse_args()
    columns, rows = (int(n) for n in args.size.split("x"))
    result = run(args.agents, args.rate, args.seconds, (columns, rows))
    print(result.pop("screen"))
    for key, value in result.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
