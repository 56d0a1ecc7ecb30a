"""The town's command server (tinytown/forkserver.py, started by `tt run`), end to end
through `tt`: commands run in it give what they give in their own process, signals reach
them, and it never outlives its town or strands a command (docs/architecture.md)."""

from __future__ import annotations

import contextlib
import fcntl
import marshal
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

from tests.faults.faultkit import (
    TT,
    FaultTown,
    alive,
    children,
    command_servers,
    one_error_line,
    until,
)
from tinytown.launcher import socket_path


def served(ft: FaultTown) -> dict[str, str]:
    return {**ft.env, "TT_FORK_SERVER": "require"}


def own_process(ft: FaultTown) -> dict[str, str]:
    return {**ft.env, "TT_FORK_SERVER": "off"}


def server_up(ft: FaultTown) -> int:
    """The town's one command server, once it answers; its pid."""
    until(lambda: ft.tt("list", env=served(ft)).returncode == 0, 30, what="the command server")
    (pid,) = command_servers(ft.root)
    return pid


def same(a: subprocess.CompletedProcess[str], b: subprocess.CompletedProcess[str]) -> None:
    assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr)


def test_commands_run_in_the_server_only_while_the_town_runs(ft: FaultTown) -> None:
    ft.spawn("ann")
    refused = ft.tt("send", "ann", "early", env=served(ft))
    assert "command server did not run the command" in one_error_line(refused)
    assert ft.inbox("ann") == []  # refused before anything ran
    ft.start_run()
    server_up(ft)
    ft.ok("interrupt", "ann")  # no round takes the messages below
    for env in (served(ft), own_process(ft)):
        out = ft.tt("send", "ann", "hello", env=env)
        assert out.returncode == 0 and out.stdout.startswith("Sent task to ann"), out
    assert len(ft.inbox("ann")) == 2
    # Same answers, same exit codes, same error sentences, either way.
    for args in [("list",), ("inbox", "ann"), ("send", "nobody", "hi"), ("task", "show")]:
        same(ft.tt(*args, env=served(ft)), ft.tt(*args, env=own_process(ft)))
    task = ft.assign("ann", "work")
    tokyo = {"TZ": "Asia/Tokyo"}  # local times are the client's, not the server's
    same(
        ft.tt("task", "show", task, env={**served(ft), **tokyo}),
        ft.tt("task", "show", task, env={**own_process(ft), **tokyo}),
    )
    assert ft.tt("send", "nobody", "hi", env=served(ft)).returncode == 1
    assert ft.tt("task", "show", env=served(ft)).returncode == 2


def test_a_command_runs_where_and_as_whom_its_tt_was_started(ft: FaultTown) -> None:
    ann = ft.spawn("ann")
    ft.spawn("bob")
    ft.start_run()
    server_up(ft)
    ft.ok("interrupt", "bob")
    inside = ft.root / "src" / "deep"
    inside.mkdir(parents=True)
    # From a subdirectory of the town, as agent ann (her CLI's environment names her).
    env = {**served(ft), "TT_AGENT_ID": ann}
    done = subprocess.run(
        [*TT, "send", "bob", "from ann"], cwd=inside, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    (raw,) = ft.inbox("bob")
    assert '"from":"' + ann + '"' in raw.replace(" ", "")


def test_the_command_writes_to_the_terminal_of_its_tt(ft: FaultTown) -> None:
    """The standard streams themselves are passed: a terminal stays a terminal (`tt status`
    colours it and fits its width), as in a command run in its own process."""
    name = "a-rather-long-agent-name-for-a-narrow-terminal"
    ft.spawn(name)
    ft.start_run()
    server_up(ft)

    def on_a_terminal(env: dict[str, str]) -> bytes:
        primary, secondary = pty.openpty()
        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
        env = {k: v for k, v in env.items() if k != "COLUMNS"}
        try:
            proc = subprocess.run(
                [*TT, "status"], cwd=ft.root, env={**env, "TERM": "xterm"},
                stdout=secondary, stderr=secondary, timeout=30,
            )  # fmt: skip
            assert proc.returncode == 0
            os.close(secondary)
            out = b""
            while True:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # EIO: the terminal's other side is closed
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            os.close(primary)

    piped = ft.ok("status")
    assert "\x1b[" not in piped and name in piped
    for env in (own_process(ft), served(ft)):
        shown = on_a_terminal(env).decode()
        assert "\x1b[" in shown, shown  # coloured
        (row,) = [line for line in shown.splitlines() if "idle" in line]
        assert name not in row and "a-\u2026" in row, row  # the table fits the width


@contextlib.contextmanager
def served_wait(ft: FaultTown) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A `tt wait` (blocks for a minute) running in the town's command server: its `tt`
    process and the served command's pid."""
    ft.spawn("ann")
    ft.start_run()
    server = server_up(ft)
    waiting = subprocess.Popen(
        [*TT, "wait", "ann", "--timeout", "60"],
        cwd=ft.root, env=served(ft), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        (command,) = until(lambda: children(server), 20, what="the served command")
        yield waiting, command
    finally:
        waiting.kill()
        waiting.wait()


def test_ctrl_c_reaches_the_command_in_the_server(ft: FaultTown) -> None:
    with served_wait(ft) as (waiting, command):
        waiting.send_signal(signal.SIGINT)
        assert waiting.wait(timeout=20) == 130
        until(lambda: not alive(command), 10, what="the command to end")


def test_a_served_command_dies_with_its_tt(ft: FaultTown) -> None:
    """kill -9 of a `tt` (as when an agent's round that ran it is killed): its command in
    the server is killed too, as it would have been in its own process."""
    with served_wait(ft) as (waiting, command):
        waiting.kill()
        waiting.wait()
        until(lambda: not alive(command), 10, what="the command to die with its tt")
    assert ft.tt("list", env=served(ft)).returncode == 0  # the server serves on


def test_a_command_killed_by_a_signal_ends_its_tt_by_that_signal(ft: FaultTown) -> None:
    with served_wait(ft) as (waiting, command):
        os.kill(command, signal.SIGTERM)
        assert waiting.wait(timeout=20) == -signal.SIGTERM  # as if it had been its own


def test_a_crashed_server_is_replaced_while_its_commands_run(ft: FaultTown) -> None:
    """kill -9 of the command server: `tt run` starts another (after 1 s) even while a
    command the first one started still runs (it does not hold the town's server lock)."""
    with served_wait(ft) as (_waiting, command):
        (first,) = command_servers(ft.root)
        os.kill(first, signal.SIGKILL)
        until(
            lambda: [p for p in command_servers(ft.root) if p != first],
            20,
            what=lambda: "a new server: " + (ft.root / ".tt/logs/command-server.log").read_text(),
        )
        until(lambda: ft.tt("list", env=served(ft)).returncode == 0, 20, what="served again")
        assert alive(command)  # (the first server's command goes on)


def test_kill_9_of_the_town_takes_its_command_server(ft: FaultTown) -> None:
    """No process outlives the town: its command server exits when the town's process is
    killed (its lifeline pipe closes), and `tt` goes back to running commands itself."""
    ft.spawn("ann")
    host = ft.start_run()
    server = server_up(ft)
    ft.unwatch(host.pid)
    host.kill()
    host.wait()
    until(lambda: not alive(server), 10, what="the command server to exit")
    assert command_servers(ft.root) == []
    assert ft.tt("send", "ann", "hi").returncode == 0  # the default: runs here
    assert "did not run" in one_error_line(ft.tt("send", "ann", "hi", env=served(ft)))


def test_tt_stop_stops_the_server_too(ft: FaultTown) -> None:
    ft.spawn("ann")
    host = ft.start_run()
    server = server_up(ft)
    ft.unwatch(host.pid)
    out = ft.tt("stop", env=served(ft))  # itself run in the server it stops
    assert out.returncode == 0 and "stopped" in out.stdout, out
    assert host.wait(timeout=30) == 0
    until(lambda: not alive(server), 10, what="the command server to exit")


def test_a_malformed_request_changes_nothing(ft: FaultTown) -> None:
    """Junk on the socket, a client that leaves mid-request: nothing runs, the server
    goes on serving."""
    import socket

    ft.spawn("ann")
    ft.start_run()
    server = server_up(ft)
    ft.ok("interrupt", "ann")
    path = socket_path(str(ft.root))
    ours = subprocess.run(  # what a `tt` process sends as its identity
        [sys.executable, "-c", "import marshal, sys; from tinytown.launcher import identity;"
         " sys.stdout.buffer.write(marshal.dumps(identity()))"],
        env=ft.env, capture_output=True, check=True,
    ).stdout  # fmt: skip
    junk = [b"", b"\x00\x00\x00\x05junk!", b"\xff\xff\xff\xff", b"not even a length"]
    with_fds = [
        b"\x00\x00\x00\x04abcd",  # not marshal data
        b"\x00\x00\x00\x02" + marshal.dumps(7)[:2],  # cut short
        _framed(marshal.dumps([1, 2])),  # not a request
        _framed(marshal.dumps({"argv": ["tt", "send", "ann", "x"]})),  # no identity
        _framed(marshal.dumps({"identity": marshal.loads(ours)})),  # nothing to run
    ]
    for payload, fds in [(j, []) for j in junk] + [(j, [0, 1, 2]) for j in with_fds]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(path)
            socket.send_fds(conn, [payload], fds) if fds else conn.sendall(payload)
            conn.shutdown(socket.SHUT_WR)
            answer = conn.recv(100)
            assert answer in (b"", b"refused other interpreter or module path\n"), answer
    assert command_servers(ft.root) == [server]
    assert ft.tt("send", "ann", "still served", env=served(ft)).returncode == 0
    assert ft.inbox("ann") != []


def _framed(blob: bytes) -> bytes:
    return len(blob).to_bytes(4, "big") + blob


def test_the_setting_turns_it_off(ft: FaultTown) -> None:
    ft.configure(command_server=False)
    ft.spawn("ann")
    ft.start_run()
    deadline = time.monotonic() + 1  # (a server binds its socket in ~0.3 s here)
    while time.monotonic() < deadline:
        assert command_servers(ft.root) == []
        time.sleep(0.1)
    assert not Path(socket_path(str(ft.root))).exists()
    assert ft.tt("send", "ann", "hi").returncode == 0
