"""The `tt` program's client of the command server (tinytown/launcher.py), against a
scripted server in this test: once a command has started it is never run a second time,
whatever happens to the exchange. End-to-end behaviour: tests/faults/test_command_server.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tinytown import launcher
from tinytown.townroot import CONFIG_FILE
from tinytown.unixaddress import unix_address

#: Runs launcher.run(["list"]) in a fresh process (its own signal handlers, standard
#: streams) and prints what it returned.
CLIENT = "import sys; from tinytown import launcher; print('result', launcher.run(['list']))"


@pytest.fixture
def town(tmp_path: Path) -> Path:
    root = tmp_path / "t"
    (root / ".tt").mkdir(parents=True)
    (root / CONFIG_FILE).write_text("")
    return root


@pytest.fixture
def scripted(town: Path) -> Iterator[Callable[[Callable[[socket.socket], None]], None]]:
    """A server at the town's socket that answers one request with ``script(conn)``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with unix_address(launcher.socket_path(str(town))) as address:
        listener.bind(address)
    listener.listen(1)
    threads: list[threading.Thread] = []

    def serve(script: Callable[[socket.socket], None]) -> None:
        def run() -> None:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed at the end of the test: nobody came
                return
            with conn:
                _, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
                for fd in fds:
                    os.close(fd)
                script(conn)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    yield serve
    listener.shutdown(socket.SHUT_RDWR)  # wakes an accept nobody answered
    listener.close()
    for thread in threads:
        thread.join(timeout=10)


def client(town: Path, *, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT],
        cwd=town,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def a_pid_that_ended() -> int:
    ended = subprocess.Popen(["true"])
    ended.wait()
    return ended.pid


def test_a_signal_after_the_command_ended_does_not_run_it_again(
    town: Path, scripted: Callable[[Callable[[socket.socket], None]], None]
) -> None:
    """The command ended and was reaped before its exit line was read: the client's
    Ctrl-C finds no process to pass it on to. It still takes the command's exit code
    (before: the lookup error made it run the command itself, a second time)."""
    started, proceed = threading.Event(), threading.Event()

    def script(conn: socket.socket) -> None:
        conn.sendall(b"pid %d\n" % a_pid_that_ended())
        started.set()  # (the client passes signals on from before it sent its request)
        proceed.wait(10)  # the client has had its Ctrl-C
        conn.sendall(b"exit 3\n")

    scripted(script)
    proc = client(town)
    try:
        assert started.wait(20)
        proc.send_signal(signal.SIGINT)
        proceed.set()
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert out.strip() == "result 3", err


def test_a_connection_lost_after_the_start_is_an_unknown_outcome(
    town: Path, scripted: Callable[[Callable[[socket.socket], None]], None]
) -> None:
    scripted(lambda conn: conn.sendall(b"pid %d\n" % a_pid_that_ended()))
    out, err = client(town).communicate(timeout=20)
    assert out.strip() == "result 1"
    assert "may or may not have taken effect" in err


def test_a_refusal_or_nothing_started_runs_the_command_here(
    town: Path, scripted: Callable[[Callable[[socket.socket], None]], None]
) -> None:
    scripted(lambda conn: conn.sendall(b"refused changed on disk\n"))
    out, _ = client(town).communicate(timeout=20)
    assert out.strip() == "result None"
    scripted(lambda conn: None)  # closed before any word
    out, _ = client(town).communicate(timeout=20)
    assert out.strip() == "result None"


def test_a_command_killed_by_a_signal_ends_its_tt_by_that_signal(
    town: Path, scripted: Callable[[Callable[[socket.socket], None]], None]
) -> None:
    scripted(lambda conn: conn.sendall(b"pid %d\nexit -15\n" % a_pid_that_ended()))
    proc = client(town)
    proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGTERM  # as `tt` itself would have died


def test_a_closed_standard_stream_is_never_passed(
    town: Path, scripted: Callable[[Callable[[socket.socket], None]], None]
) -> None:
    """With descriptor 0 closed the client's own socket would take its place: such a
    `tt` runs its command itself (the server, which would serve it, is never asked)."""
    scripted(lambda conn: conn.sendall(b"pid %d\nexit 0\n" % a_pid_that_ended()))
    argv = [sys.executable, "-c", CLIENT]
    with_stdin = subprocess.run(argv, cwd=town, capture_output=True, text=True, timeout=20)
    assert with_stdin.stdout.strip() == "result 0"  # served
    scripted(lambda conn: conn.sendall(b"pid %d\nexit 0\n" % a_pid_that_ended()))
    closed = subprocess.run(
        ["sh", "-c", 'exec "$0" -c "$1" <&-', *argv[0:1], CLIENT],
        cwd=town, capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert closed.stdout.strip() == "result None", closed.stderr


@pytest.mark.parametrize(
    ("argv", "town"),
    [
        (["mcp"], ""),
        (["mcp", "-t", "/x"], "/x"),
        (["-t", "/y", "mcp"], "/y"),
        (["mcp", "--town", "/x"], "/x"),
        (["mcp", "--http"], None),  # a long-lived server of its own: never served
        (["mcp", "--http", "--bind", "0.0.0.0:9"], None),
        (["mcp", "token", "new"], None),
    ],
)
def test_only_tt_mcp_over_stdio_is_served(argv: list[str], town: str | None) -> None:
    assert launcher._stdio_mcp_town(argv, launcher.townroot.town_option(argv)) == town
