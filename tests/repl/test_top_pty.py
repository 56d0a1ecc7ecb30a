"""End to end: ``tt top`` in a real pseudo-terminal on a town that another process runs:
rows drawn, a key interrupts an agent, q leaves (exit 0) and the town keeps running."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.conftest import TtRunner

from .test_pty import Terminal


def test_tt_top_in_a_terminal(town_dir: Path, tt_env: dict[str, str], tt: TtRunner) -> None:
    assert tt("spawn", "alice").returncode == 0
    town = subprocess.Popen(
        [sys.executable, "-m", "tinytown", "run", "--no-repl"],
        cwd=town_dir,
        env=tt_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 140, 0, 0))
    child: subprocess.Popen[bytes] | None = None
    try:
        assert town.stdout is not None
        deadline = time.monotonic() + 20
        while "alice: starting -> idle" not in town.stdout.readline():
            assert time.monotonic() < deadline and town.poll() is None, "the town did not start"
        child = subprocess.Popen(
            [sys.executable, "-m", "tinytown", "top"],
            cwd=town_dir,
            env={**tt_env, "TERM": "xterm"},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        slave = -1
        term = Terminal(master)
        term.expect("running pid")
        term.expect("alice (")
        term.expect("idle")
        term.write("i")  # interrupt the selected (only) agent
        term.expect("paused")
        term.write("q")
        assert child.wait(timeout=10) == 0
        assert town.poll() is None  # leaving the dashboard leaves the town running
        listed = tt("list")
        assert "paused" in listed.stdout, listed.stdout
    finally:
        for proc in (child, town):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if slave >= 0:
            os.close(slave)
        os.close(master)


def test_tt_demo_shows_the_dashboard_in_a_terminal(tt_env: dict[str, str], tmp_path: Path) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 140, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-m", "tinytown", "demo", "--dir", str(tmp_path / "demo")],
        cwd=tmp_path,
        env={**tt_env, "TERM": "xterm"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(slave)
    try:
        term = Terminal(master)
        term.expect("NAME")  # the dashboard's table
        term.expect("carol (")
        term.expect("Summary", timeout=60)  # once the demo is over, the summary
        term.expect("supervisor mail")
        assert child.wait(timeout=30) == 0
        assert "[complete]" not in term.seen.split("Summary")[1]  # no event lines after
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
