"""One connection to Redis on trio: the socket, RESP by hiredis (store/resp.py). The
blocking twin for one-shot commands is store/blocking.py.

A connection runs one command (or pipeline) at a time. It tells the two failures apart
that decide whether a command may be tried again (see store/client.py): raising
:class:`RedisUnavailableError` when the command was not sent (it cannot have run), and its
subclass :class:`ReplyLostError` when it was sent but the reply never came (it may have).

Cancellation: a command cancelled half-way leaves the connection in an unknown state; it
is marked broken, so the pool closes it instead of reusing it. Nothing is half-read.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
from collections.abc import Sequence
from typing import Any

import trio

from tinytown.errors import RedisUnavailableError
from tinytown.store.resp import (
    Address,
    Arg,
    ResponseError,
    first_reply,
    login_failed,
    pack,
    reader,
    reply_lost,
    unreachable,
)

__all__ = ["Address", "Arg", "Connection", "ResponseError"]


class Connection:
    """One socket to Redis; one command (or pipeline) at a time."""

    def __init__(self, stream: trio.abc.Stream, address: Address) -> None:
        self.stream = stream
        self.address = address
        self.reader = reader()
        self.broken = False

    @classmethod
    async def open(cls, address: Address) -> Connection:
        """Connect and log in. Raises :class:`RedisUnavailableError`. Cancellable."""
        try:
            if address.path:
                stream: trio.abc.Stream = await _open_unix(address.path)
            elif address.tls:
                stream = await trio.open_ssl_over_tcp_stream(
                    address.host, address.port, ssl_context=ssl.create_default_context()
                )
            else:
                stream = await trio.open_tcp_stream(address.host, address.port)
        except (OSError, trio.BrokenResourceError) as exc:
            raise unreachable(address, exc) from exc
        conn = cls(stream, address)
        try:
            for command in address.login():
                await conn.execute(*command)
        except (ResponseError, RedisUnavailableError) as exc:
            # Nothing of the caller's command was sent: a plain connect failure.
            await conn.aclose()
            raise login_failed(address, exc) from exc
        except BaseException:
            await conn.aclose()
            raise
        return conn

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply; raise :class:`ResponseError` on an error reply.

        Raises :class:`RedisUnavailableError` when the command was not sent, and its
        subclass :class:`ReplyLostError` when it was sent but the reply never came.
        """
        return first_reply(await self._roundtrip([args]))

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send many commands in one write; return every reply (errors as values).

        Raises like :meth:`execute` (a failed write of several commands is a
        ReplyLostError: some may have arrived). Cancellation breaks the connection."""
        return await self._roundtrip(commands)

    async def send(self, *args: Arg) -> None:
        """Write one command without reading a reply (pub/sub). Cancellation may leave it
        half-written: the connection must then be closed."""
        await self._write(pack(args))

    async def read_reply(self) -> Any:
        """Read the next reply (used for pub/sub pushes). Cancellation breaks the connection."""
        try:
            return await self._read_one()
        except BaseException:
            self.broken = True
            raise

    def peer_closed(self) -> bool:
        """Whether an idle connection has something to read: EOF or a reset (the server
        closed it or restarted), or a stray reply. Either way it is unusable. Never
        blocks; TLS connections are not checked (a TLS record may legitimately wait)."""
        stream = self.stream
        if not isinstance(stream, trio.SocketStream):
            return False
        poller = select.poll()
        poller.register(stream.socket.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))

    async def _roundtrip(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        if self.broken:
            raise RedisUnavailableError("Redis connection is broken.")
        payload = b"".join(pack(c) for c in commands)
        try:
            await self._write(payload)
        except RedisUnavailableError as exc:
            if len(commands) > 1:
                # Part of a pipeline may have arrived (and run) before the write failed.
                raise reply_lost(exc) from exc
            # One command whose bytes did not all go out cannot have run.
            raise
        except BaseException:
            self.broken = True
            raise
        try:
            return [await self._read_one() for _ in commands]
        except RedisUnavailableError as exc:
            self.broken = True
            raise reply_lost(exc) from exc
        except BaseException:
            # Cancelled mid-command: the reply stream is out of step; drop it.
            self.broken = True
            raise

    async def _write(self, payload: bytes) -> None:
        try:
            await self.stream.send_all(payload)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.broken = True
            raise RedisUnavailableError(f"Lost the connection to Redis: {exc}.") from exc

    async def _read_one(self) -> Any:
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            try:
                data = await self.stream.receive_some(65536)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise RedisUnavailableError(f"Lost the connection to Redis: {exc}.") from exc
            if not data:
                raise RedisUnavailableError("Redis closed the connection.")
            self.reader.feed(bytes(data))

    def close_now(self) -> None:
        """Close the socket at once (no await: for a connection not kept in the pool)."""
        self.broken = True
        if isinstance(self.stream, trio.SocketStream):
            self.stream.socket.close()

    async def aclose(self) -> None:
        self.broken = True
        with trio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await self.stream.aclose()


async def _open_unix(path: str) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if len(os.fsencode(path)) > 100 and os.path.isdir("/proc/self/fd"):
            # sun_path holds ~107 bytes; reach a deep socket through a directory fd.
            dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
            try:
                await sock.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
            finally:
                os.close(dir_fd)
        else:
            await sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)
