"""One connection to Redis over a plain blocking socket, for one-shot commands.

The same interface and the same failure rules as the trio :class:`~tinytown.store.
connection.Connection` (RedisUnavailableError when a command was not sent,
ReplyLostError when it was sent and the reply never came), but its ``async`` methods
never suspend: they block the thread until Redis answers. A command line that runs one
command and exits drives its service code with them without an event loop
(store/oneshot.py), and so never imports trio.

Used only where no trio run is active (store/client.py chooses); inside trio a blocking
socket would stall every task. There is nothing to cancel: Ctrl-C (KeyboardInterrupt)
marks the connection broken, like a cancelled trio command.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Sequence
from typing import Any

from tinytown.errors import RedisUnavailableError
from tinytown.store.resp import (
    Address,
    Arg,
    ResponseError,
    first_reply,
    is_idempotent,
    login_failed,
    pack,
    reader,
    reply_lost,
    unreachable,
)
from tinytown.unixaddress import unix_address

#: Commands other than idempotent ones sent by blocking connections in this process
#: (store/oneshot.py: a run that sent none may be started again under trio).
writes = 0


class BlockingConnection:
    """One blocking socket to Redis; one command (or pipeline) at a time."""

    def __init__(self, sock: socket.socket, address: Address) -> None:
        self.sock = sock
        self.address = address
        self.reader = reader()
        self.broken = False

    @classmethod
    async def open(cls, address: Address) -> BlockingConnection:
        """Connect and log in. Raises :class:`RedisUnavailableError`. Never suspends."""
        try:
            sock = _connect(address)
        except OSError as exc:
            raise unreachable(address, exc) from exc
        conn = cls(sock, address)
        try:
            for command in address.login():
                await conn.execute(*command)
        except (ResponseError, RedisUnavailableError) as exc:
            conn.close_now()
            raise login_failed(address, exc) from exc
        except BaseException:
            conn.close_now()
            raise
        return conn

    async def execute(self, *args: Arg) -> Any:
        """One command and its reply; :class:`ResponseError` raised on an error reply."""
        return first_reply(self._roundtrip([args]))

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Many commands in one write; every reply (errors as values)."""
        return self._roundtrip(commands)

    async def send(self, *args: Arg) -> None:
        """Write one command without reading a reply (pub/sub)."""
        self._write(pack(args))

    async def read_reply(self) -> Any:
        """Read the next reply (pub/sub pushes): blocks until one comes."""
        try:
            return self._read_one()
        except BaseException:
            self.broken = True
            raise

    def peer_closed(self) -> bool:
        """Whether an idle connection has something to read (EOF, a reset, a stray
        reply): it is then unusable. Never blocks."""
        if self.address.tls:  # a TLS record may legitimately wait to be read
            return False
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))

    def close_now(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError):
            self.sock.close()

    async def aclose(self) -> None:
        self.close_now()

    def _roundtrip(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        global writes
        if self.broken:
            raise RedisUnavailableError("Redis connection is broken.")
        payload = b"".join(pack(c) for c in commands)
        if not all(is_idempotent(c) for c in commands):
            writes += 1  # counted before the write: it may arrive even if the call fails
        try:
            self._write(payload)
        except RedisUnavailableError as exc:
            if len(commands) > 1:  # part of a pipeline may have arrived (and run)
                raise reply_lost(exc) from exc
            raise
        except BaseException:
            self.broken = True
            raise
        try:
            return [self._read_one() for _ in commands]
        except RedisUnavailableError as exc:
            self.broken = True
            raise reply_lost(exc) from exc
        except BaseException:  # Ctrl-C half-way: the reply stream is out of step
            self.broken = True
            raise

    def _write(self, payload: bytes) -> None:
        try:
            self.sock.sendall(payload)
        except OSError as exc:
            self.broken = True
            raise RedisUnavailableError(f"Lost the connection to Redis: {exc}.") from exc

    def _read_one(self) -> Any:
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            try:
                data = self.sock.recv(65536)
            except OSError as exc:
                raise RedisUnavailableError(f"Lost the connection to Redis: {exc}.") from exc
            if not data:
                raise RedisUnavailableError("Redis closed the connection.")
            self.reader.feed(data)


def _connect(address: Address) -> socket.socket:
    if address.path:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with unix_address(address.path) as short:  # a deep town's socket too
                sock.connect(short)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((address.host, address.port))
    if address.tls:
        import ssl  # only for TLS: ~5 ms of a one-shot command's start-up otherwise

        try:
            return ssl.create_default_context().wrap_socket(sock, server_hostname=address.host)
        except BaseException:
            sock.close()
            raise
    return sock
