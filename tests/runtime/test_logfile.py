"""Rotating logs: agent logs and runtime.log are bounded on disk (issue 9, point 6)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from tests.conftest import TtRunner
from tests.runtime.conftest import alive, eventually
from tinytown.runtime.logfile import RUNTIME_LOG_ENV, RotatingLog, rotated_files, runtime_echo
from tinytown.services.config import TownConfig
from tinytown.services.town import Town


def test_rotation_keeps_the_newest_output_in_order(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    with RotatingLog(path, 10, 2) as log:
        for n in range(5):
            log.write(f"{n}".encode() * 10)  # exactly one file's worth each
    assert [f.name for f in rotated_files(path)] == ["a.log", "a.log.1", "a.log.2"]
    assert [f.read_text() for f in rotated_files(path)] == ["4" * 10, "3" * 10, "2" * 10]


def test_a_write_larger_than_the_limit_is_split(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    with RotatingLog(path, 4, 1) as log:
        log.write(b"abcdefghij")
    assert path.read_bytes() == b"ij"
    assert path.with_name("a.log.1").read_bytes() == b"efgh"
    assert not path.with_name("a.log.2").exists()  # keep=1: "abcd" is gone


def test_reopening_counts_what_is_there_and_zero_disables(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"12345678")
    with RotatingLog(path, 10, 0) as log:
        log.write(b"abc")  # 11 > 10: rotate; keep=0 drops the old file
    assert path.read_bytes() == b"c" and rotated_files(path) == [path]
    with RotatingLog(path, 0, 3) as log:
        log.write(b"x" * 1000)
    assert path.stat().st_size == 1001 and rotated_files(path) == [path]


def test_runtime_echo_writes_the_rotating_runtime_log(
    town_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = TownConfig.load(town_dir)
    config.data["runtime"].update({"log_max_bytes": 100, "log_keep": 1})
    config.save()
    runtime_echo(town_dir)("to stdout")
    assert capsys.readouterr().out == "to stdout\n"
    log = tmp_path / "runtime.log"
    monkeypatch.setenv(RUNTIME_LOG_ENV, str(log))
    echo = runtime_echo(town_dir)
    for n in range(100):
        echo(f"line {n:03d} \udcff")  # (an unencodable surrogate is replaced, not raised)
    files = rotated_files(log)
    assert len(files) == 2 and all(f.stat().st_size <= 100 for f in files)
    assert log.read_bytes().endswith(b"line 099 ?\n")


async def test_a_detached_runtime_rotates_its_log(tt: TtRunner, town: Town) -> None:
    config = TownConfig.load(town.root)
    config.data["runtime"].update({"log_max_bytes": 400, "log_keep": 1})
    config.save()
    started = await trio.to_thread.run_sync(tt, "run", "--detach")
    assert started.returncode == 0, started.stderr
    holder = await town.runtime()
    assert holder is not None
    try:
        for n in range(8):  # each spawn is echoed as an event line
            result = await trio.to_thread.run_sync(tt, "spawn", f"w{n}")
            assert result.returncode == 0, result.stderr
        log = town.root / ".tt" / "logs" / "runtime.log"

        async def rotated() -> bool:
            return "[spawn] spawned w7" in log.read_text(errors="replace")

        await eventually(rotated, timeout=20)
        files = rotated_files(log)
        assert len(files) == 2, files
        assert all(f.stat().st_size <= 400 for f in files)
    finally:
        os.kill(holder.pid, signal.SIGTERM)
        await eventually(lambda: trio.to_thread.run_sync(lambda: not alive(holder.pid)), 30)
