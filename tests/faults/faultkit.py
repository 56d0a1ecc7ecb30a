"""Helpers for the end-to-end fault tests: a town driven only through real `tt` processes.

Every wait is a poll against a deadline (`until`); nothing sleeps for a fixed time. Redis is
read and poked with redis-py (raw keys: the faults are about what is *in* Redis, not about
what the API would write). Every process a test starts is stopped at teardown, and any
process that still carries the town's directory in its environment (`TT_TOWN_DIR`, which
agents and their children inherit) is killed so no test leaks processes into another.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import redis

from tinytown.services.config import TownConfig

REPO = Path(__file__).resolve().parents[2]
SCRIPTED_AGENT = REPO / "actors" / "scripted_agent.py"
LEDGER_AGENT = REPO / "actors" / "ledger_agent.py"
TT = [sys.executable, "-m", "tinytown"]

#: Town settings for fault tests: short grace periods keep every kill and shutdown quick.
FAST_RUNTIME = {
    "kill_grace": 0.5,
    "heartbeat_interval": 0.5,
    "shutdown_grace": 3.0,
    "max_restarts": 10,
}

Arg = str | bytes


def until(
    check: Callable[[], Any],
    timeout: float = 20.0,
    step: float = 0.05,
    what: str | Callable[[], str] = "",
) -> Any:
    """Poll ``check`` until it returns something truthy; AssertionError at the deadline.
    ``what`` describes the awaited condition (a callable is evaluated at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"not within {timeout:g}s: {detail or check}")
        time.sleep(step)


def proc_state(pid: int) -> str | None:
    """The kernel's state letter for ``pid``, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z")


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid and alive(int(entry)):
                found.append(int(entry))
    return found


def town_processes(root: Path) -> list[int]:
    """Live processes (not zombies) whose environment names ``root`` as TT_TOWN_DIR: the
    agents' CLIs and everything they started, wherever they were reparented."""
    marker = f"TT_TOWN_DIR={root}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0") and alive(int(entry)):
            found.append(int(entry))
    return found


def command_servers(root: Path) -> list[int]:
    """Live command servers (tinytown/forkserver.py) of the town at ``root`` (not the
    commands they forked, which share their command line)."""
    marker = str(root / ".tt" / "commands.sock").encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tinytown.forkserver" in argv and marker in argv and alive(int(entry)):
            found.append(int(entry))
    forked = {pid for server in found for pid in children(server)}
    return [pid for pid in found if pid not in forked]


def one_error_line(result: subprocess.CompletedProcess[str], codes: tuple[int, ...] = (1,)) -> str:
    """Assert a clean refusal: an exit code in ``codes``, one ``tt: `` line, no traceback."""
    out, err = result.stdout, result.stderr
    assert result.returncode in codes, f"exit {result.returncode}\n{out}\n{err}"
    assert "Traceback" not in out + err, out + err
    lines = [line for line in err.splitlines() if line.startswith("tt: ")]
    assert len(lines) == 1, err
    return lines[0]


class FaultTown:
    """One town for one test, driven through `tt` subprocesses."""

    def __init__(self, root: Path, env: dict[str, str], url: str | None) -> None:
        self.root = root
        self.env = env
        self.config = TownConfig.load(root)
        self.name = self.config.name
        self._url = url
        self._redis: redis.Redis | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self.extra_pids: list[int] = []
        #: runtimes that must stay up (pid -> log): waits fail at once when one exits
        self.watched: dict[int, Path] = {}

    # -- configuration -------------------------------------------------------------

    def configure(self, **runtime: Any) -> None:
        """Write runtime settings straight into tinytown.toml (before `tt run`)."""
        config = TownConfig.load(self.root)
        config.data.setdefault("runtime", {}).update(runtime)
        config.save()

    def add_cli(self, name: str, command: str) -> None:
        config = TownConfig.load(self.root)
        config.data.setdefault("agent_clis", {})[name] = {"command": command}
        config.save()

    # -- tt ----------------------------------------------------------------------------

    def tt(
        self, *args: Arg, timeout: float = 30, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `tt ARGS` to completion (bytes arguments reach argv as given)."""
        raw = subprocess.run(
            [*TT, *args],
            cwd=self.root,
            env=env or self.env,
            capture_output=True,
            timeout=timeout,
        )
        return subprocess.CompletedProcess(
            raw.args,
            raw.returncode,
            raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"),
        )

    def ok(self, *args: Arg, timeout: float = 30) -> str:
        result = self.tt(*args, timeout=timeout)
        assert result.returncode == 0, f"tt {args}: exit {result.returncode}\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
        return result.stdout

    def ok_json(self, *args: Arg, timeout: float = 30) -> Any:
        return json.loads(self.ok(*args, "--json", timeout=timeout))

    def start_run(self, *extra: str, log: str = "runtime-test.log") -> subprocess.Popen[bytes]:
        """`tt run --no-repl` in its own session (a kill -9 takes only it); output to a file."""
        out = open(self.root / log, "ab")  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [*TT, "run", "--no-repl", *extra],
            cwd=self.root,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.procs.append(proc)
        until(lambda: self.holder_pid() == proc.pid or proc.poll() is not None, 30, what="lease")
        assert proc.poll() is None, f"tt run exited {proc.returncode}: {self.run_log(log)}"
        self.watched[proc.pid] = self.root / log
        return proc

    def start_detached(self) -> int:
        """`tt run --detach`; returns the background runtime's pid (from the lease)."""
        out = self.ok("run", "--detach")
        pid = self.holder_pid()
        assert pid is not None and f"pid {pid}" in out, out
        self.extra_pids.append(pid)
        self.watched[pid] = self.root / ".tt" / "logs" / "runtime.log"
        return pid

    def unwatch(self, pid: int) -> None:
        """The test is about to stop this runtime itself."""
        self.watched.pop(pid, None)

    def check_runtimes(self) -> Literal[False]:
        """Fail now (not at some later deadline) if a watched runtime has exited; else
        False (so a wait can say ``check_runtimes() or condition``)."""
        for pid, log in list(self.watched.items()):
            if not alive(pid):
                self.watched.pop(pid)
                text = log.read_text(errors="replace") if log.exists() else ""
                raise AssertionError(f"tt run (pid {pid}) exited; its output:\n{text[-3000:]}")
        return False

    def run_log(self, log: str = "runtime-test.log") -> str:
        path = self.root / log
        return path.read_text(errors="replace") if path.exists() else ""

    # -- Redis -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            return "unix://" + str(self.root / ".tt" / "redis.sock")
        return self._url

    @property
    def r(self) -> Any:  # redis.Redis, whose reply types are too loose to be useful here
        if self._redis is None:
            self._redis = redis.Redis.from_url(
                self.url, decode_responses=True, retry_on_timeout=True, socket_timeout=10
            )
        return self._redis

    def key(self, *parts: str) -> str:
        return ":".join(["tt", self.name, *parts])

    def holder_pid(self) -> int | None:
        with contextlib.suppress(redis.ConnectionError, ValueError, TypeError, KeyError):
            raw = self.r.get(self.key("runtime"))
            return int(json.loads(raw)["pid"]) if raw else None
        return None

    def agent_id(self, name: str) -> str:
        agent_id = self.r.hget(self.key("agents"), name)
        assert agent_id, f"no agent {name}"
        return str(agent_id)

    def agent(self, name: str) -> dict[str, Any]:
        return json.loads(self.r.get(self.key("agent", self.agent_id(name))) or "null")

    def task(self, task_id: str) -> dict[str, Any]:
        return json.loads(self.r.get(self.key("task", task_id)) or "null")

    def task_state(self, task_id: str) -> str | None:
        raw = self.r.get(self.key("task", task_id))
        return json.loads(raw)["state"] if raw else None

    def inflight(self, name: str) -> int:
        return int(self.r.llen(self.key("inflight", self.agent_id(name))))

    def inbox(self, name: str) -> list[str]:
        return list(self.r.lrange(self.key("inbox", self.agent_id(name)), 0, -1))

    def events(self, since: str = "-") -> list[dict[str, str]]:
        return [fields for _, fields in self.r.xrange(self.key("events"), since, "+")]

    def wake(self, what: str) -> None:
        self.r.publish(self.key("wake"), what)

    # -- agents ------------------------------------------------------------------------

    def spawn(self, name: str, cli: str = "scripted") -> str:
        self.ok("spawn", name, "--cli", cli)
        return self.agent_id(name)

    def spawn_all(self, *names: str, cli: str = "scripted") -> None:
        """Spawn several agents at once (each `tt` costs a Python start-up)."""
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            list(pool.map(lambda name: self.spawn(name, cli), names))

    def assign(self, agent: str, description: str, *extra: str) -> str:
        return str(self.ok_json("assign", agent, description, *extra)["id"])

    def wait_state(self, name: str, *states: str, timeout: float = 20) -> dict[str, Any]:
        return until(
            lambda: (
                self.check_runtimes() or ((a := self.agent(name)) and a["state"] in states and a)
            ),
            timeout,
            what=lambda: f"agent {name} in {states} (is {self.agent(name)['state']})",
        )

    def wait_task(self, task_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
        return until(
            lambda: (
                self.check_runtimes() or ((t := self.task(task_id)) and t["state"] in states and t)
            ),
            timeout,
            what=lambda: f"task {task_id} in {states} (is {self.task_state(task_id)})",
        )

    def log_pids(self, agent: str, label: str = "agent-pid") -> list[int]:
        path = self.root / ".tt" / "logs" / f"{agent}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return [int(p) for p in re.findall(rf"{label} (\d+)", text)]

    # -- teardown ----------------------------------------------------------------------

    def cleanup(self) -> None:
        """Stop every runtime this test started, then anything of the town still alive."""
        pids = [p.pid for p in self.procs if p.poll() is None] + self.extra_pids
        holder = self.holder_pid()
        if holder:
            pids.append(holder)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for pid in pids:
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for pid in town_processes(self.root) + command_servers(self.root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._redis is not None:
            self._redis.close()


def make_town(root: Path, name: str, env: dict[str, str], url: str | None) -> FaultTown:
    """Create the town's tinytown.toml with the scripted and ledger agents as presets."""
    root.mkdir(parents=True, exist_ok=True)
    config = TownConfig.create(root, name)
    config.data["default_cli"] = "scripted"
    config.data["agent_clis"] = {
        "scripted": {"command": f"{sys.executable} {SCRIPTED_AGENT}"},
        "ledger": {
            "command": f"{sys.executable} {LEDGER_AGENT} --ledger {root / 'ledger.jsonl'}"
            " --child-prob 0"
        },
    }
    config.data["runtime"].update(FAST_RUNTIME)
    config.save()
    return FaultTown(root, env, url)


@contextlib.contextmanager
def managed(town: FaultTown) -> Iterator[FaultTown]:
    try:
        yield town
    finally:
        town.cleanup()
