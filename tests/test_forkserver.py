"""The command server's own rules (tinytown/forkserver.py), in this process: what it
refuses before forking, how it notices changed code, where it listens. End-to-end
behaviour through `tt` is in tests/faults/test_command_server.py."""

from __future__ import annotations

import marshal
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinytown import launcher
from tinytown.forkserver import Server, Stamps, listen
from tinytown.unixaddress import unix_address


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An importable package ``ttstamps`` with one module, imported."""
    root = tmp_path / "lib" / "ttstamps"
    root.mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "mod.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(root.parent))
    import ttstamps.mod  # noqa: F401

    yield root
    for name in ("ttstamps", "ttstamps.mod"):
        sys.modules.pop(name, None)


def test_stamps_notice_a_package_installed_on_the_module_path(package: Path) -> None:
    """pip installing or upgrading a dependency (attrs, trio, ...) adds or removes entries
    of a directory on the module path: the server's code would be stale."""
    stamps = Stamps("ttstamps")
    assert str(package.parent) in stamps.files  # (the fixture put it on the path)
    assert not stamps.changed()
    (package.parent / "newdep-1.0.dist-info").mkdir()
    assert stamps.changed()


def test_stamps_notice_a_changed_or_removed_module(package: Path) -> None:
    stamps = Stamps("ttstamps")
    modules = {p for p in stamps.files if p.endswith(".py")}
    assert modules == {str(package / "__init__.py"), str(package / "mod.py")}
    assert not stamps.changed()
    (package / "mod.py").write_text("X = 22\n")  # another size, another mtime
    assert stamps.changed()
    assert not Stamps("ttstamps").changed()
    os.unlink(package / "mod.py")
    assert Stamps.changed(stamps)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    path = str(tmp_path / "commands.sock")
    listener = listen(path)
    lifeline_r, lifeline_w = os.pipe()
    srv = Server(listener, lifeline_r)
    try:
        yield srv, path
    finally:
        srv.close()
        listener.close()
        os.close(lifeline_r)
        os.close(lifeline_w)


def ask(path: str, request: object) -> socket.socket:
    """A client that sent ``request`` with its standard streams (not yet answered)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with unix_address(path) as address:
        conn.connect(address)
    blob = marshal.dumps(request)
    socket.send_fds(conn, [len(blob).to_bytes(4, "big") + blob], [0, 1, 2])
    return conn


def answer(conn: socket.socket) -> bytes:
    with conn:
        return conn.recv(200)


def test_another_interpreter_is_refused_before_anything_runs(
    server: tuple[Server, str],
) -> None:
    srv, path = server
    theirs = launcher.identity()
    theirs[0] = "/usr/bin/some-other-python"
    conn = ask(path, {**launcher.request(["send", "x", "y"]), "identity": theirs})
    accepted, _ = srv.listener.accept()
    assert srv.handle(accepted) is None
    assert answer(conn) == b"refused other interpreter or module path\n"
    assert srv.children == {}


def test_changed_code_is_refused_and_ends_the_server(
    server: tuple[Server, str], package: Path
) -> None:
    srv, path = server
    srv.stamps = Stamps("ttstamps")
    (package / "mod.py").write_text("X = 333\n")
    conn = ask(path, {**launcher.request(["send", "x", "y"]), "identity": srv.identity})
    accepted, _ = srv.listener.accept()
    assert srv.handle(accepted) == launcher.STALE_EXIT  # `tt run` starts a fresh one
    assert answer(conn) == b"refused changed on disk\n"
    assert srv.children == {}


def test_a_socket_path_longer_than_an_address_holds(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = str(deep / "commands.sock")
    assert len(path) > 108
    with listen(path) as listener:
        assert os.stat(path).st_mode & 0o777 == 0o600  # this user only
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            with unix_address(path) as address:
                conn.connect(address)
            accepted, _ = listener.accept()
            accepted.close()


def test_the_lifeline_closing_ends_the_server(server: tuple[Server, str]) -> None:
    srv, _path = server
    reader, writer = os.pipe()
    srv.lifeline = reader
    os.close(writer)  # the town's process is gone
    try:
        assert srv.serve() == 0
    finally:
        os.close(reader)
    assert signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL  # put back as it was
