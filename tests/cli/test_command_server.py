"""`tt run` keeps the town's command server (tinytown/cli/command_server.py): started,
started again after a crash, and gone with the town, cancellation included."""

from __future__ import annotations

import itertools
import os
import signal
import sys
from pathlib import Path

import pytest
import trio

from tests.faults.faultkit import alive, command_servers
from tinytown.cli import command_server
from tinytown.launcher import socket_path


async def answered(root: Path) -> list[int]:
    """The town's live command servers, once one listens (a poll with a deadline)."""
    with trio.fail_after(30):
        while not (Path(socket_path(str(root))).exists() and command_servers(root)):
            await trio.sleep(0.02)
    return command_servers(root)


async def test_cancelling_takes_the_server_and_its_socket(town_dir: Path) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(command_server.keep_command_server, town_dir)
        (pid,) = await answered(town_dir)
        nursery.cancel_scope.cancel()
    assert not alive(pid)  # reaped before the cancellation returned
    assert not Path(socket_path(str(town_dir))).exists()
    assert (town_dir / ".tt" / "logs" / "command-server.log").exists()


async def test_a_crashed_server_is_started_again(town_dir: Path) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(command_server.keep_command_server, town_dir)
        (first,) = await answered(town_dir)
        os.kill(first, signal.SIGKILL)
        with trio.fail_after(30):  # after RETRY_FIRST (1 s)
            while not [p for p in command_servers(town_dir) if p != first]:
                await trio.sleep(0.05)
        (second,) = await answered(town_dir)
        assert second != first
        nursery.cancel_scope.cancel()
    assert command_servers(town_dir) == []


async def test_a_second_server_of_the_same_town_steps_aside(town_dir: Path) -> None:
    """Two `tt run` of one town (the second is refused its lease soon after): the second
    server does not take the first one's socket."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(command_server.keep_command_server, town_dir)
        (first,) = await answered(town_dir)
        rival = await trio.run_process(
            [sys.executable, "-m", "tinytown.forkserver", socket_path(str(town_dir))],
            stdin=None, capture_stderr=True, check=False,
        )  # fmt: skip
        assert rival.returncode == 1
        assert b"Another command server serves this town." in rival.stderr
        assert command_servers(town_dir) == [first]
        nursery.cancel_scope.cancel()


async def test_the_retry_pause_grows_to_a_minute(
    town_dir: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that keeps failing is started again after 1, 2, 4 ... s, at most 60."""
    starts: list[float] = []

    async def failing(root: Path) -> int:
        starts.append(trio.current_time())
        return 1

    monkeypatch.setattr(command_server, "_serve_once", failing)
    with trio.move_on_after(300):
        await command_server.keep_command_server(town_dir)
    gaps = [round(b - a) for a, b in itertools.pairwise(starts)]
    assert gaps[:8] == [1, 2, 4, 8, 16, 32, 60, 60]
