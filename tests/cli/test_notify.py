"""``[notify] command``: the runtime runs the user's command when an agent asks, a task
fails, or an agent finishes its last task (through ``tt run --no-repl``), and the runner
itself: no shell, a timeout, always reaped, failures reported, rate limited."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

from tests.conftest import TtRunner
from tinytown.runtime.context import Context
from tinytown.runtime.notify import Notification, Notifier, RateLimit
from tinytown.services.config import TownConfig
from tinytown.services.town import Town

NOTIFY_SCRIPT = """\
import json, os, sys, time
keys = ("TT_NOTIFY_KIND", "TT_NOTIFY_AGENT", "TT_NOTIFY_TEXT", "TT_NOTIFY_TASK")
with open("notify.log", "a") as fh:
    fh.write(json.dumps({k: os.environ.get(k) for k in keys} | {"argv": sys.argv[1:]}) + "\\n")
if os.environ["TT_NOTIFY_KIND"] == "failed":
    print("cannot reach the desktop", file=sys.stderr)
    sys.exit(3)
"""


def _configure(town_dir: Path, command: str, **extra: object) -> None:
    config = TownConfig.load(town_dir)
    config.data["notify"] = {"command": command, **extra}
    config.save()


def _wait_lines(path: Path, count: int, timeout: float = 40) -> list[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]
        time.sleep(0.05)


def test_notify_runs_on_question_finish_and_failure(
    town_dir: Path, tt_env: dict[str, str], tt: TtRunner
) -> None:
    (town_dir / "notify.py").write_text(NOTIFY_SCRIPT)
    _configure(town_dir, f"{sys.executable} notify.py 'two words' $HOME")
    assert tt("spawn", "ann").returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinytown", "run", "--no-repl"],
        cwd=town_dir,
        env=tt_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert tt("wait", "ann", "--idle", "--timeout", "30").returncode == 0
        asked = tt("assign", "ann", "ask supervisor which db?; complete ok")
        assert asked.returncode == 0, asked.stderr
        notes = _wait_lines(town_dir / "notify.log", 2)
        assert tt("assign", "ann", "fail 2").returncode == 0
        notes = _wait_lines(town_dir / "notify.log", 3)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    kinds = [(n["TT_NOTIFY_KIND"], n["TT_NOTIFY_AGENT"]) for n in notes]
    assert kinds == [("question", "ann"), ("finished", "ann"), ("failed", "ann")], out
    assert notes[0]["TT_NOTIFY_TEXT"] == "which db?"
    assert notes[2]["TT_NOTIFY_TASK"] and notes[1]["TT_NOTIFY_TASK"] == ""
    assert notes[0]["argv"] == ["two words", "$HOME"]  # split like a shell, never run by one
    assert "Traceback" not in out


def test_rate_limit_allows_a_burst_then_one_per_refill() -> None:
    now = [0.0]
    limit = RateLimit(burst=3, refill=10.0, clock=lambda: now[0])
    assert [limit.allow() for _ in range(5)] == [True, True, True, False, False]
    assert limit.dropped == 2
    now[0] = 10.0
    assert [limit.allow(), limit.allow()] == [True, False]
    now[0] = 1000.0
    assert sum(limit.allow() for _ in range(10)) == 3  # never more than the burst


async def test_a_hanging_command_is_killed_and_reaped(town: Town, tmp_path: Path) -> None:
    lines: list[str] = []
    ctx = Context(town, echo=lines.append)
    pid_file = tmp_path / "pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid()))"
    script += "; time.sleep(60)"
    town.config.data["notify"] = {"command": f"{sys.executable} -c {script!r}", "timeout": 0.5}
    notifier = Notifier(ctx)
    argv = notifier.command()
    assert argv is not None and argv[0] == sys.executable
    with trio.fail_after(20):
        await notifier.run_one(argv, Notification("failed", "ann", "boom", "t1"))
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass  # reaped: gone entirely
    else:
        raise AssertionError("the notify command outlived its timeout")
    assert any("timed out after 0.5 s (killed)" in line for line in lines), lines


async def test_storms_and_bad_commands_are_reported_never_raised(town: Town) -> None:
    lines: list[str] = []
    ctx = Context(town, echo=lines.append)
    town.config.data["notify"] = {"command": "/nonexistent/notify-me"}
    now = [0.0]
    notifier = Notifier(ctx, limit=RateLimit(burst=2, refill=60.0, clock=lambda: now[0]))
    note = Notification("question", "ann", "why?")
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            started = [notifier.submit(nursery, note) for _ in range(50)]
    assert started.count(True) == 2  # a storm forks two processes, not fifty
    assert sum("cannot run '/nonexistent/notify-me'" in line for line in lines) == 2, lines
    now[0] = 60.0
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            assert notifier.submit(nursery, note)
    assert any("48 notification(s) dropped (rate limit)" in line for line in lines), lines
    town.config.data["notify"] = {"command": "'unbalanced"}
    assert notifier.command() is None
    assert any("cannot split notify.command" in line for line in lines)


async def test_a_failing_command_is_one_report_line(town: Town, tmp_path: Path) -> None:
    lines: list[str] = []
    (town.root / "notify.py").write_text(NOTIFY_SCRIPT)
    town.config.data["notify"] = {"command": f"{sys.executable} notify.py"}
    notifier = Notifier(Context(town, echo=lines.append))
    argv = notifier.command()
    assert argv is not None
    with trio.fail_after(20):
        await notifier.run_one(argv, Notification("failed", "ann", "boom", "t1"))
        await notifier.run_one(argv, Notification("question", "ann", "why?"))
    assert [line.split(" ", 1)[1] for line in lines] == [
        f"notify: {sys.executable} exited 3: cannot reach the desktop"
    ]


def test_notify_settings_through_tt_config(tt, town_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """`tt config` accepts the notify settings (checked), so nobody edits TOML by hand."""
    assert tt("config", "notify.command", "notify-send tinytown").returncode == 0
    assert tt("config", "notify.timeout", "3").returncode == 0
    bad = tt("config", "notify.timeout", "0")
    assert bad.returncode == 1 and "must be more than 0" in bad.stderr
    shown = tt("config", "notify.command")
    assert shown.returncode == 0 and "notify-send tinytown" in shown.stdout
    text = (town_dir / "tinytown.toml").read_text()
    assert "[notify]" in text and "timeout = 3.0" in text
