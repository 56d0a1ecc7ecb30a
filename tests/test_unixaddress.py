"""Unix socket paths longer than a socket address holds (tinytown/unixaddress.py): the one
rule every client and server of a town's sockets uses."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tinytown.unixaddress import MAX_DIRECT, unix_address


def deep(tmp_path: Path) -> str:
    folder = tmp_path / ("d" * 60) / ("e" * 60)
    folder.mkdir(parents=True)
    path = str(folder / "s.sock")
    assert len(path) > 108
    return path


def test_a_short_path_is_its_own_address() -> None:
    for path in ["town/.tt/redis.sock", "/" + "x" * (MAX_DIRECT - 1)]:
        with unix_address(path) as address:
            assert address == path


def test_a_long_path_is_bound_and_reached_on_linux(tmp_path: Path) -> None:
    path = deep(tmp_path)
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        with unix_address(path) as address:
            assert len(address) < MAX_DIRECT
            server.bind(address)
        server.listen(1)
        assert os.path.exists(path)  # bound where it was asked for
        with unix_address(path) as address:
            client.connect(address)
        server.accept()[0].close()
    before = set(os.listdir("/proc/self/fd"))
    with unix_address(path):
        pass
    assert set(os.listdir("/proc/self/fd")) <= before  # the directory's descriptor closed


def test_elsewhere_a_long_path_is_reached_through_a_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = deep(tmp_path)
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        with unix_address(path) as address:
            server.bind(address)
        server.listen(1)
        isdir = os.path.isdir
        monkeypatch.setattr(os.path, "isdir", lambda p: p != "/proc/self/fd" and isdir(p))
        with unix_address(path) as address:
            assert address.startswith("/tmp/") and os.path.islink(address)
            client.connect(address)
        assert not os.path.exists(address)  # the alias went with the block
        server.accept()[0].close()
