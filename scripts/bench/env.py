"""The bench's environment: a private redis-server, a temporary directory for towns, every
process the bench starts (always reaped), and small helpers shared by the figure groups."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
import trio

from bench import REPO, SCRIPTS
from tinytown.services.config import TownConfig
from tinytown.services.town import Town
from tinytown.store.server import EmbeddedServer

CHILD = SCRIPTS / "bench_child.py"


def mono() -> float:
    """CLOCK_MONOTONIC: shared by every process, so times taken in children compare."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


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
        # Users' `tt` runs from cached bytecode; a shell that forbids writing it would make
        # every command compile its modules again (~2x the start-up here).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
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


async def connect(root: Path) -> Town:
    return await Town.connect(root, search=False, start_server=False)


async def spawn_one(root: Path, name: str, cli: str = "true") -> str:
    """Register one agent (not started: that is the running town's business); its id."""
    async with await connect(root) as town:
        return (await town.agents.spawn(name, cli)).id


async def wait_all_idle(town: Town, ids: list[str], timeout: float, step: float = 0.01) -> float:
    """Poll the agent records (one MGET) until every one is idle; return when that was seen."""
    keys = [town.keys.agent(i) for i in ids]
    with trio.fail_after(timeout):
        while True:
            raws = await town.redis.execute("MGET", *keys)
            if all(r and '"state":"idle"' in r for r in raws):
                return mono()
            await trio.sleep(step)
