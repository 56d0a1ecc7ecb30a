"""One connection to Redis: where the server is (Address), the socket, RESP by hiredis.

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

import attrs
import hiredis
import trio

from tinytown.errors import RedisUnavailableError, ReplyLostError

Arg = str | bytes | int | float


class ResponseError(Exception):
    """Redis answered a command with an error reply."""


@attrs.frozen
class Address:
    """Where a Redis server is and how to log in."""

    path: str | None = None
    host: str = "localhost"
    port: int = 6379
    tls: bool = False
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    db: int = 0

    @classmethod
    def from_url(cls, url: str) -> Address:
        if url.startswith("unix://") and "?" not in url and "@" not in url:
            # The embedded server's URL: skip importing redis-py (~0.2 s of `tt` start-up).
            return cls(path=url[len("unix://") :])
        # Everything else (auth, TLS, db, query options) through redis-py's parser.
        from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

        try:
            opts = parse_url(url)
        except ValueError as exc:
            raise RedisUnavailableError(f"Invalid Redis URL: {exc}.") from exc
        conn_cls = opts.get("connection_class")
        return cls(
            path=opts.get("path") if conn_cls is UnixDomainSocketConnection else None,
            host=opts.get("host") or "localhost",
            port=int(opts.get("port") or 6379),
            tls=conn_cls is SSLConnection,
            username=opts.get("username"),
            password=opts.get("password"),
            db=int(opts.get("db") or 0),
        )

    def describe(self) -> str:
        """The address without credentials, for messages."""
        if self.path:
            return f"unix://{self.path}"
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"


class Connection:
    """One socket to Redis; one command (or pipeline) at a time."""

    def __init__(self, stream: trio.abc.Stream, address: Address) -> None:
        self.stream = stream
        self.address = address
        self.reader = hiredis.Reader(replyError=ResponseError, encoding="utf-8", errors="replace")
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
            why = getattr(exc, "strerror", None) or exc
            raise RedisUnavailableError(
                f"Cannot reach Redis at {address.describe()}: {why}."
            ) from exc
        conn = cls(stream, address)
        try:
            if address.password:
                auth = (
                    [address.username, address.password] if address.username else [address.password]
                )
                await conn.execute("AUTH", *auth)
            if address.db:
                await conn.execute("SELECT", address.db)
        except ResponseError as exc:
            await conn.aclose()
            raise RedisUnavailableError(
                f"Redis at {address.describe()} refused the login: {exc}."
            ) from exc
        except RedisUnavailableError as exc:
            # Nothing of the caller's command was sent: a plain connect failure.
            await conn.aclose()
            raise RedisUnavailableError(
                f"Lost the connection to Redis at {address.describe()} while logging in."
            ) from exc
        except BaseException:
            await conn.aclose()
            raise
        return conn

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply; raise :class:`ResponseError` on an error reply.

        Raises :class:`RedisUnavailableError` when the command was not sent, and its
        subclass :class:`ReplyLostError` when it was sent but the reply never came.
        """
        (reply,) = await self._roundtrip([args])
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send many commands in one write; return every reply (errors as values).

        Raises like :meth:`execute` (a failed write of several commands is a
        ReplyLostError: some may have arrived). Cancellation breaks the connection."""
        return await self._roundtrip(commands)

    async def send(self, *args: Arg) -> None:
        """Write one command without reading a reply (pub/sub). Cancellation may leave it
        half-written: the connection must then be closed."""
        await self._write(_pack(args))

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
        payload = b"".join(_pack(c) for c in commands)
        try:
            await self._write(payload)
        except RedisUnavailableError as exc:
            if len(commands) > 1:
                # Part of a pipeline may have arrived (and run) before the write failed.
                raise _reply_lost(exc) from exc
            # One command whose bytes did not all go out cannot have run.
            raise
        except BaseException:
            self.broken = True
            raise
        try:
            return [await self._read_one() for _ in commands]
        except RedisUnavailableError as exc:
            self.broken = True
            raise _reply_lost(exc) from exc
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

    async def aclose(self) -> None:
        self.broken = True
        with trio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await self.stream.aclose()


def _reply_lost(exc: RedisUnavailableError) -> ReplyLostError:
    return ReplyLostError(
        f"Lost the connection to Redis before a reply ({str(exc).rstrip('.')}):"
        " the command may or may not have run."
    )


def _pack(command: Sequence[Arg]) -> bytes:
    return hiredis.pack_command(tuple(command))  # type: ignore[arg-type]


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
