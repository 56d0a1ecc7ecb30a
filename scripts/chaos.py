#!/usr/bin/env python3
"""Chaos soak: a town of ledger agents under random faults, then an audit of what happened.

    python scripts/chaos.py --minutes 10 --seed 7

Creates a throw-away town (its own embedded redis-server in a temporary directory, never
the user's), spawns ``--agents`` agents whose CLI is ``actors/ledger_agent.py`` and runs
``tt run --no-repl``. For ``--minutes`` it feeds ``--tasks`` tasks in batches (``tt sync
push`` of small plan files: some assigned to a named agent, the rest to the backlog; a
push is idempotent, so a batch that failed in an outage is simply pushed again) while
injecting random faults at random intervals:

    runtime_kill9    kill -9 of `tt run`, then a new `tt run`
    redis_kill9      SIGKILL of the town's redis-server, an outage, then a restart
    client_kill      CLIENT KILL TYPE normal (and pubsub): every connection dropped
    agent_kill       tt kill, later tt restart
    agent_interrupt  tt interrupt, later tt resume
    agent_close      tt close, later tt restart
    bad_control      a malformed entry on tt:<town>:control
    bad_inbox        a malformed entry in an agent's inbox

Then it stops injecting, brings every agent back, lets the town finish (``--settle``
deadline), stops it (SIGTERM, ``tt down``) and checks, from Redis and from the ledger the
agents kept (one JSON line per task start and end):

    every task created and completed, none lost; every completed task done by some CLI
    (an ``end`` line); duplicates (more than one ``end``) counted: at-least-once is fine;
    no message left in flight (``tt:<town>:inflight:*`` all empty, found with SCAN);
    no process of the town left after ``tt down``; the runtime never died on its own.

It samples the runtime's resident memory (VmRSS) every few seconds and reports it per
runtime incarnation (a kill -9 starts a new one). Prints a summary table, writes
``chaos-result.json`` in the town directory (``--keep`` keeps it), and exits 1 if a check
failed.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import heapq
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tinytown.services.config import TownConfig
from tinytown.store.server import EmbeddedServer

REPO = Path(__file__).resolve().parents[1]
LEDGER_AGENT = REPO / "actors" / "ledger_agent.py"
TT = [sys.executable, "-m", "tinytown"]

FAULTS: dict[str, int] = {  # kind -> weight
    "runtime_kill9": 2,
    "redis_kill9": 2,
    "client_kill": 3,
    "agent_kill": 3,
    "agent_interrupt": 3,
    "agent_close": 2,
    "bad_control": 2,
    "bad_inbox": 2,
}
GARBAGE = ['["kill"]', "5", "null", '"kill"', "{not json", '{"verb": 7}', "\x00\xff", "[]"]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def rss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Chaos:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = Path(tempfile.mkdtemp(prefix="ttc-", dir=args.base)) / "town"
        self.root.mkdir()
        self.ledger = self.root / "ledger.jsonl"
        self.name = f"chaos-{args.seed}"
        self.env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        self.env.update(TT_HOME=str(self.root.parent / "home"), PYTHONUNBUFFERED="1")
        for var in ("TT_AGENT_ID", "TT_AGENT_NAME", "TT_TASK_ID", "TT_TOWN", "TT_TOWN_DIR"):
            self.env.pop(var, None)
        self.server = EmbeddedServer(self.root / ".tt")
        self.agents = [f"w{i}" for i in range(args.agents)]
        self.runtime: subprocess.Popen[bytes] | None = None
        self.incarnation = 0
        self.start = time.monotonic()
        self.faults: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()  # refused verbs, retried pushes, ...
        self.samples: list[tuple[float, int, int]] = []  # (t, incarnation, rss KiB)
        self.orphans_after_crash: list[int] = []
        self.runtime_deaths: list[str] = []
        self.schedule: list[tuple[float, int, str, str]] = []  # (due, seq, verb, agent)
        self.seq = 0
        self.pushed: dict[str, str] = {}  # plan id -> task id
        self.batches: list[Path] = []
        self.unpushed: list[tuple[Path, int]] = []  # (plan file, attempts)
        self._r: redis.Redis | None = None

    # -- plumbing ----------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.args.verbose:
            print(f"[{time.monotonic() - self.start:7.1f}s] {text}", flush=True)

    def tt(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        try:
            return subprocess.run(
                [*TT, *args],
                cwd=self.root,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            self.notes[f"tt {args[0]} timed out"] += 1
            return subprocess.CompletedProcess(args, 124, "", "timed out")
        finally:
            took = time.monotonic() - started
            if took > 5:  # a verb that waited for something: worth knowing
                self.notes[f"tt {args[0]} took > 5 s"] += 1
                self.log(f"tt {' '.join(args)} took {took:.1f} s")

    @property
    def r(self) -> redis.Redis:
        if self._r is None:
            self._r = redis.Redis(
                unix_socket_path=str(self.root / ".tt" / "redis.sock"),
                decode_responses=True,
                socket_timeout=10,
            )
        return self._r

    def key(self, *parts: str) -> str:
        return ":".join(["tt", self.name, *parts])

    def redis_try(self, fn: Callable[[redis.Redis], Any]) -> Any:
        """Run ``fn`` against Redis, restarting the server if it is down (as `tt` does)."""
        for _ in range(5):
            try:
                return fn(self.r)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                self.r.connection_pool.disconnect()
                self.server.start()
        return fn(self.r)

    # -- the town ------------------------------------------------------------------------

    def setup(self) -> None:
        init = self.tt("init", "--name", self.name)
        if init.returncode:
            raise SystemExit(f"chaos: tt init failed: {init.stderr.strip()}")
        config = TownConfig.load(self.root)
        command = (
            f"{sys.executable} {LEDGER_AGENT} --ledger {self.ledger}"
            f" --work 0.05 0.3 --child-prob 0.2 --background-prob {self.args.background_prob}"
            f" --setsid-prob {self.args.setsid_prob}"
        )
        config.data["agent_clis"] = {"ledger": {"command": command}}
        config.data["default_cli"] = "ledger"
        config.data["runtime"].update(
            kill_grace=1.0, shutdown_grace=5.0, heartbeat_interval=1.0, round_timeout=120.0
        )
        config.save()
        for name in self.agents:
            spawned = self.tt("spawn", name)
            if spawned.returncode:
                raise SystemExit(f"chaos: tt spawn {name} failed: {spawned.stderr.strip()}")
        self.start_runtime()

    def start_runtime(self) -> None:
        self.server.start()
        with open(self.root / "runtime-chaos.log", "ab") as out:
            self.runtime = subprocess.Popen(
                [*TT, "run", "--no-repl"],
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.incarnation += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.runtime.poll() is not None:
                self.runtime_died("exited at start")
                return
            if self.holder_pid() == self.runtime.pid:
                self.log(f"runtime #{self.incarnation} up: pid {self.runtime.pid}")
                return
            time.sleep(0.05)
        self.notes["runtime slow to start"] += 1

    def holder_pid(self) -> int | None:
        with contextlib.suppress(Exception):
            raw = self.redis_try(lambda r: r.get(self.key("runtime")))
            return int(json.loads(raw)["pid"]) if raw else None
        return None

    def runtime_died(self, why: str) -> None:
        assert self.runtime is not None
        lines = (self.root / "runtime-chaos.log").read_text(errors="replace").splitlines()
        # The cause: the last `tt:` line, or the last lines of a traceback.
        said = [x for x in lines[-200:] if x.startswith("tt: ") or "Error" in x]
        cause = " | ".join(said[-3:] or lines[-3:])
        self.runtime_deaths.append(
            f"#{self.incarnation} {why} (exit {self.runtime.poll()}): {cause}"
        )
        self.log(f"runtime #{self.incarnation} died: {why}")
        self.start_runtime()

    def watchdog(self) -> None:
        if self.runtime is not None and self.runtime.poll() is not None:
            self.runtime_died("exited on its own")

    def sample_rss(self) -> None:
        if self.runtime is not None and (kib := rss_kib(self.runtime.pid)):
            self.samples.append((time.monotonic() - self.start, self.incarnation, kib))

    # -- work ------------------------------------------------------------------------------

    def make_batches(self) -> None:
        """Plan files of 5-20 tasks; about half name an agent, the rest go to the backlog."""
        made, index = 0, 0
        batch_dir = self.root / "batches"
        batch_dir.mkdir()
        while made < self.args.tasks:
            size = min(self.rng.randint(5, 20), self.args.tasks - made)
            lines = []
            for i in range(size):
                # One task in ten is long, so a kill -9 of the runtime finds rounds running.
                work = f"sleep {self.rng.uniform(2, 5):.2f}" if self.rng.random() < 0.1 else "work"
                lines += [
                    "[[tasks]]",
                    f'id = "b{index}-t{i}"',
                    f'description = "{work}; b{index}-t{i}"',
                ]
                if self.rng.random() < 0.5:
                    lines.append(f'agent = "{self.rng.choice(self.agents)}"')
                lines.append("")
            path = batch_dir / f"b{index}.toml"
            path.write_text("\n".join(lines))
            self.batches.append(path)
            made += size
            index += 1

    def push(self, path: Path, attempts: int) -> None:
        result = self.tt("sync", "push", "--file", str(path), "--json")
        if result.returncode == 0:
            with contextlib.suppress(ValueError, KeyError):
                self.pushed.update(json.loads(result.stdout)["task_ids"])
            return
        self.notes["push retried"] += 1
        if attempts >= 3:  # e.g. its agent is stopped: give the batch to the backlog
            text = path.read_text()
            path.write_text("\n".join(x for x in text.splitlines() if not x.startswith("agent")))
        self.unpushed.append((path, attempts + 1))

    # -- faults ----------------------------------------------------------------------------

    def later(self, delay: float, verb: str, agent: str) -> None:
        self.seq += 1
        heapq.heappush(self.schedule, (time.monotonic() + delay, self.seq, verb, agent))

    def run_due(self, everything: bool = False) -> None:
        while self.schedule and (everything or self.schedule[0][0] <= time.monotonic()):
            _, _, verb, agent = heapq.heappop(self.schedule)
            self.verb(verb, agent)

    def verb(self, verb: str, agent: str) -> bool:
        result = self.tt(verb, agent, timeout=60)
        if result.returncode:
            reason = result.stderr.strip().removeprefix("tt: ")[:60]
            self.notes[f"{verb} refused: {reason}"] += 1
        return result.returncode == 0

    def ledger_processes(self) -> list[int]:
        marker = str(self.ledger).encode()
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if marker in Path(f"/proc/{entry}/cmdline").read_bytes() and alive(int(entry)):
                        found.append(int(entry))
        return found

    def town_processes(self) -> list[int]:
        """Ledger agents and their children, and anything else carrying the town's env."""
        marker = f"TT_TOWN_DIR={self.root}".encode()
        found = set(self.ledger_processes())
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                with contextlib.suppress(OSError):
                    env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
                    if marker in env and alive(int(entry)):
                        found.add(int(entry))
        return sorted(found)

    def inject(self, kind: str) -> None:
        self.faults[kind] += 1
        self.log(f"fault: {kind}")
        agent = self.rng.choice(self.agents)
        if kind == "runtime_kill9":
            assert self.runtime is not None
            os.kill(self.runtime.pid, signal.SIGKILL)
            self.runtime.wait()
            # A dead runtime's agents must die with it: give them 1 s, count survivors.
            deadline = time.monotonic() + 1
            while self.ledger_processes() and time.monotonic() < deadline:
                time.sleep(0.05)
            survivors = len(self.ledger_processes())
            self.orphans_after_crash.append(survivors)
            time.sleep(self.rng.uniform(0.0, 1.0))
            self.start_runtime()
        elif kind == "redis_kill9":
            with contextlib.suppress(OSError, ValueError):
                pid = int((self.root / ".tt" / "redis.pid").read_text())
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
            self.r.connection_pool.disconnect()
            time.sleep(self.rng.uniform(0.2, 3.0))  # the outage
            self.server.start()
        elif kind == "client_kill":
            self.redis_try(lambda r: r.execute_command("CLIENT", "KILL", "TYPE", "normal"))
            self.redis_try(lambda r: r.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
            self.r.connection_pool.disconnect()
        elif kind == "agent_kill":
            if self.verb("kill", agent):
                self.later(self.rng.uniform(1, 5), "restart", agent)
        elif kind == "agent_interrupt":
            if self.verb("interrupt", agent):
                self.later(self.rng.uniform(0.5, 4), "resume", agent)
        elif kind == "agent_close":
            if self.verb("close", agent):
                self.later(self.rng.uniform(1, 5), "restart", agent)
        elif kind == "bad_control":
            garbage = self.rng.choice(GARBAGE)
            self.redis_try(lambda r: r.rpush(self.key("control"), garbage))
            self.redis_try(lambda r: r.publish(self.key("wake"), "control"))
        elif kind == "bad_inbox":
            agent_id = self.redis_try(lambda r: r.hget(self.key("agents"), agent))
            garbage = self.rng.choice(GARBAGE)
            self.redis_try(lambda r: r.rpush(self.key("inbox", agent_id), garbage))
            self.redis_try(lambda r: r.publish(self.key("wake"), agent_id))

    # -- phases ----------------------------------------------------------------------------

    def soak(self) -> None:
        window = self.args.minutes * 60
        kinds = [k for k in FAULTS if k in self.args.faults]
        weights = [FAULTS[k] for k in kinds]
        feed_until = self.start + window * 0.85
        next_push = self.start
        push_gap = window * 0.85 / max(1, len(self.batches))
        next_fault = self.start + self.rng.expovariate(1 / self.args.fault_interval)
        next_sample = self.start
        todo = list(self.batches)
        while time.monotonic() - self.start < window:
            now = time.monotonic()
            self.watchdog()
            if now >= next_sample:
                self.sample_rss()
                next_sample = now + 5
            if todo and (now >= next_push or now >= feed_until):
                self.push(todo.pop(0), 0)
                next_push = now + push_gap * self.rng.uniform(0.5, 1.5)
            elif self.unpushed and self.rng.random() < 0.3:
                self.push(*self.unpushed.pop(0))
            self.run_due()
            if kinds and now >= next_fault:
                self.inject(self.rng.choices(kinds, weights)[0])
                next_fault = time.monotonic() + self.rng.expovariate(1 / self.args.fault_interval)
            time.sleep(0.05)
        for path in todo:
            self.push(path, 0)

    def settle(self) -> bool:
        """Stop faults, bring everything back, and wait until every task is finished."""
        self.run_due(everything=True)
        self.server.start()
        self.watchdog()
        deadline = time.monotonic() + self.args.settle
        while self.unpushed and time.monotonic() < deadline:
            self.push(*self.unpushed.pop(0))
        for name in self.agents:
            state = self.agent_state(name)
            if state == "paused":
                self.verb("resume", name)
            elif state in ("stopped", "cold", "error"):
                self.verb("restart", name)
        while time.monotonic() < deadline:
            self.watchdog()
            self.sample_rss()
            states = self.task_states()
            if len(self.pushed) >= self.args.tasks and all(
                s in ("completed", "failed", "cancelled") for s in states.values()
            ):
                return True
            time.sleep(1)
        return False

    def agent_state(self, name: str) -> str | None:
        agent_id = self.redis_try(lambda r: r.hget(self.key("agents"), name))
        if not agent_id:
            return None
        raw = self.redis_try(lambda r: r.get(self.key("agent", agent_id)))
        with contextlib.suppress(ValueError, TypeError, KeyError):
            return str(json.loads(raw)["state"])
        return None

    def task_states(self) -> dict[str, str]:
        ids = self.redis_try(lambda r: r.zrange(self.key("tasks"), 0, -1))
        states: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            keys = [self.key("task", i) for i in chunk]
            raws = self.redis_try(functools.partial(_mget, keys=keys))
            for task_id, raw in zip(chunk, raws, strict=True):
                try:
                    states[task_id] = str(json.loads(raw)["state"])
                except (ValueError, TypeError, KeyError):
                    states[task_id] = "unreadable"
        return states

    def inflight_left(self) -> dict[str, int]:
        left = {}
        for key in self.redis_try(lambda r: list(r.scan_iter(self.key("inflight", "*"), 500))):
            if n := self.redis_try(functools.partial(_llen, key=key)):
                left[key] = n
        return left

    def stop(self) -> tuple[int | None, list[int]]:
        """SIGTERM the runtime, `tt down`, then whatever of the town is still alive."""
        code = None
        if self.runtime is not None and self.runtime.poll() is None:
            self.runtime.send_signal(signal.SIGTERM)
            try:
                code = self.runtime.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.runtime.kill()
                code = self.runtime.wait()
        self.tt("down", timeout=60)
        deadline = time.monotonic() + 5  # the last round's processes are being reaped
        while self.town_processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = self.town_processes()
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return code, orphans

    # -- audit -----------------------------------------------------------------------------

    def audit(self, settled: bool) -> dict[str, Any]:
        states = self.task_states()
        inflight = self.inflight_left()
        ends: Counter[str] = Counter()
        starts: Counter[str] = Counter()
        if self.ledger.exists():
            for line in self.ledger.read_text().splitlines():
                with contextlib.suppress(ValueError, KeyError):
                    entry = json.loads(line)
                    (ends if entry["ev"] == "end" else starts)[entry["task"]] += 1
        plan_tasks = set(self.pushed.values())
        completed = [t for t, s in states.items() if s == "completed"]
        result: dict[str, Any] = {
            "seed": self.args.seed,
            "minutes": self.args.minutes,
            "agents": len(self.agents),
            "tasks_planned": self.args.tasks,
            "tasks_created": len(plan_tasks),
            "tasks_in_redis": len(states),
            "task_states": dict(Counter(states.values())),
            "settled": settled,
            "lost": sorted(t for t in plan_tasks if states.get(t) != "completed"),
            "completed_without_ledger_end": sorted(t for t in completed if not ends[t]),
            "executions": sum(ends.values()),
            "duplicates": sum(1 for t in completed if ends[t] > 1),
            "extra_executions": sum(n - 1 for n in ends.values() if n > 1),
            "rounds_started_not_finished": sum(max(0, starts[t] - ends[t]) for t in starts),
            "inflight_left": inflight,
            "faults": dict(self.faults),
            "orphans_after_runtime_kill9": self.orphans_after_crash,
            "runtime_deaths": self.runtime_deaths,
            "notes": dict(self.notes),
        }
        return result

    def rss_summary(self) -> dict[str, Any]:
        """Resident memory of the runtime, per incarnation (a kill -9 starts a new one)."""
        runs: dict[int, list[tuple[float, int]]] = {}
        for t, incarnation, kib in self.samples:
            runs.setdefault(incarnation, []).append((t, kib))
        if not runs:
            return {}
        longest = max(runs.values(), key=len)
        t0 = longest[0][0]
        # After a minute the runtime is warm (imports, pools, caches): growth after that
        # is what a leak would show.
        warm = next((kib for t, kib in longest if t - t0 >= 60), longest[-1][1])
        return {
            "incarnations": len(runs),
            "longest_seconds": round(longest[-1][0] - t0),
            "longest_samples": len(longest),
            "longest_start_kib": longest[0][1],
            "longest_warm_kib": warm,
            "longest_end_kib": longest[-1][1],
            "longest_max_kib": max(kib for _, kib in longest),
            "max_kib": max(kib for _, _, kib in self.samples),
            "samples": [(round(t, 1), inc, kib) for t, inc, kib in self.samples],
        }


def _mget(r: redis.Redis, keys: list[str]) -> Any:
    return r.mget(keys)


def _llen(r: redis.Redis, key: str) -> Any:
    return r.llen(key)


def checks(result: dict[str, Any]) -> list[tuple[str, bool, str]]:
    return [
        (
            "every batch pushed",
            result["tasks_created"] == result["tasks_planned"],
            f"{result['tasks_created']}/{result['tasks_planned']}",
        ),
        ("town settled in time", result["settled"], str(result["task_states"])),
        (
            "no task lost (all completed)",
            not result["lost"],
            f"{len(result['lost'])} not completed",
        ),
        (
            "completed => ledger end",
            not result["completed_without_ledger_end"],
            f"{len(result['completed_without_ledger_end'])} without",
        ),
        ("nothing left in flight", not result["inflight_left"], str(result["inflight_left"])),
        (
            "no orphans after tt down",
            not result["orphans_after_down"],
            str(result["orphans_after_down"]),
        ),
        (
            "no orphans after kill -9",
            not any(result["orphans_after_runtime_kill9"]),
            str(result["orphans_after_runtime_kill9"]),
        ),
        (
            "runtime never died by itself",
            not result["runtime_deaths"],
            f"{len(result['runtime_deaths'])} death(s)",
        ),
        ("clean shutdown (exit 0)", result["shutdown_exit"] == 0, str(result["shutdown_exit"])),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="fault window (float)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--agents", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--fault-interval", type=float, default=5.0, help="mean seconds")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated kinds")
    parser.add_argument("--settle", type=float, default=180.0, help="seconds to finish after")
    parser.add_argument("--background-prob", type=float, default=0.05)
    parser.add_argument("--setsid-prob", type=float, default=0.02)
    parser.add_argument("--base", default=None, help="parent of the temporary town directory")
    parser.add_argument("--keep", action="store_true", help="keep the town directory")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    args.faults = {f.strip() for f in args.faults.split(",") if f.strip()}
    unknown = args.faults - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    chaos = Chaos(args)
    started = time.monotonic()
    try:
        chaos.setup()
        chaos.make_batches()
        chaos.soak()
        settled = chaos.settle()
        result = chaos.audit(settled)
        rss = chaos.rss_summary()
        result["shutdown_exit"], result["orphans_after_down"] = chaos.stop()
    finally:
        with contextlib.suppress(Exception):
            if chaos.runtime is not None and chaos.runtime.poll() is None:
                chaos.runtime.kill()
            chaos.server.stop()
    result["rss"] = rss
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    result["town_dir"] = str(chaos.root)
    outcome = checks(result)
    result["checks"] = {name: ok for name, ok, _ in outcome}
    text = json.dumps(result, indent=2)
    (chaos.root / "chaos-result.json").write_text(text)
    if args.json:
        args.json.write_text(text)
    print(report(result, outcome))
    if not args.keep:
        shutil.rmtree(chaos.root.parent, ignore_errors=True)
    return 0 if all(ok for _, ok, _ in outcome) else 1


def report(result: dict[str, Any], outcome: list[tuple[str, bool, str]]) -> str:
    rss = result["rss"]
    rows = [
        ("seed / minutes / agents", f"{result['seed']} / {result['minutes']} / {result['agents']}"),
        ("faults injected", ", ".join(f"{k} {v}" for k, v in sorted(result["faults"].items()))),
        (
            "tasks planned / created / in Redis",
            f"{result['tasks_planned']} / {result['tasks_created']} / {result['tasks_in_redis']}",
        ),
        ("task states", ", ".join(f"{k} {v}" for k, v in sorted(result["task_states"].items()))),
        ("executions (ledger end lines)", str(result["executions"])),
        (
            "tasks done more than once",
            f"{result['duplicates']} (+{result['extra_executions']} runs)",
        ),
        ("rounds cut short (start, no end)", str(result["rounds_started_not_finished"])),
        ("in flight left", str(sum(result["inflight_left"].values()))),
        ("orphans after kill -9 (per crash)", str(result["orphans_after_runtime_kill9"])),
        ("orphans after tt down", str(len(result["orphans_after_down"]))),
        ("runtime deaths (not ours)", str(len(result["runtime_deaths"]))),
        (
            "RSS of the longest run: start / +1 min / end / max KiB",
            f"{rss.get('longest_start_kib')} / {rss.get('longest_warm_kib')} / "
            f"{rss.get('longest_end_kib')} / {rss.get('longest_max_kib')} "
            f"({rss.get('longest_seconds')} s; {rss.get('incarnations')} incarnation(s))",
        ),
        ("elapsed", f"{result['elapsed_s']} s"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = ["chaos soak", "-" * 72] + [f"{k:<{width}}  {v}" for k, v in rows]
    if result["notes"]:
        lines.append("notes: " + "; ".join(f"{k} x{v}" for k, v in sorted(result["notes"].items())))
    for death in result["runtime_deaths"][:3]:
        lines.append(f"runtime death: {death[:300]}")
    lines += ["-" * 72] + [
        f"{'PASS' if ok else 'FAIL'}  {name}: {why}" for name, ok, why in outcome
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
