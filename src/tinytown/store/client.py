"""A small trio-native Redis client: trio sockets, hiredis for RESP, redis-py for URLs.

redis-py's asyncio client does not run on trio, and a thread per command costs ~5x
(see docs/architecture.md). This adapter reuses redis-py's URL parsing and hiredis'
command packing and reply parsing; it only owns the socket and the pool.

Cancellation: a command cancelled half-way leaves its connection in an unknown state,
so that connection is closed rather than returned to the pool. Nothing is half-read.

Retries (see :class:`Redis`): a failure BEFORE a command was written (no connection, a
pooled connection found dead, a write that did not go through) is retried for any
command; a failure AFTER it was written (the reply was lost: the command may or may not
have run) is retried only for idempotent commands (:data:`IDEMPOTENT`, scripts declared
``idempotent``, or ``idempotent=True``); any other command raises
:class:`~tinytown.errors.ReplyLostError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import hiredis
import trio

from tinytown.errors import RedisUnavailableError, ReplyLostError

Arg = str | bytes | int | float

#: Commands that may run twice with the same effect and the same reply: read-only ones
#: (MULTI/EXEC only group the commands they wrap). Only these are retried after a lost
#: reply; everything else raises ReplyLostError then.
IDEMPOTENT = frozenset(
    {
        "PING", "ECHO", "TIME", "DBSIZE", "INFO",
        "GET", "MGET", "STRLEN", "EXISTS", "TYPE", "TTL", "PTTL", "SCAN",
        "HGET", "HMGET", "HGETALL", "HKEYS", "HVALS", "HLEN", "HEXISTS", "HSCAN",
        "LRANGE", "LLEN", "LINDEX", "LPOS",
        "SCARD", "SMEMBERS", "SISMEMBER", "SSCAN",
        "ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZCARD", "ZSCORE", "ZRANK", "ZCOUNT",
        "XRANGE", "XREVRANGE", "XLEN", "XREAD",
        "MULTI", "EXEC", "DISCARD",
    }
)  # fmt: skip
#: Read-only subcommands of admin commands.
IDEMPOTENT_SUB = frozenset(
    {
        ("CONFIG", "GET"), ("SCRIPT", "EXISTS"),
        ("CLIENT", "ID"), ("CLIENT", "LIST"), ("CLIENT", "INFO"), ("CLIENT", "GETNAME"),
    }
)  # fmt: skip


def is_idempotent(command: Sequence[Arg]) -> bool:
    """Whether ``command`` may safely run again after its reply was lost."""
    name = _upper(command[0])
    if name in IDEMPOTENT:
        return True
    return len(command) > 1 and (name, _upper(command[1])) in IDEMPOTENT_SUB


def _upper(arg: Arg) -> str:
    return (arg.decode() if isinstance(arg, bytes) else str(arg)).upper()


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


@attrs.frozen
class Script:
    """A Lua script run by EVALSHA, loaded on first use.

    ``idempotent``: running it again after it ran has the same effect, and its callers
    do not depend on a reply that would differ; only then is it retried after a lost
    reply (otherwise :class:`ReplyLostError` is raised).
    """

    source: str
    sha: str = attrs.field(init=False)
    idempotent: bool = False

    @sha.default
    def _sha(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()


class Redis:
    """A pool of :class:`Connection` to one server.

    Which failures are retried:

    * Before the command was written (cannot connect, a pooled connection found closed
      by the server, a write that did not go through): the command cannot have run.
      A fresh connection is tried; with ``reconnect=True`` (the runtime) the client then
      waits with exponential backoff (50 ms doubling to 2 s) until Redis is back or the
      caller is cancelled. Without it (one-shot commands) :class:`RedisUnavailableError`.
    * After it was written (the reply was lost: the command may or may not have run):
      idempotent commands (:func:`is_idempotent`: reads, PING, MULTI/EXEC around reads;
      pipelines made only of them; scripts declared ``idempotent``; or an explicit
      ``idempotent=True``) are retried as above. Every other command -- LPOP, RPUSH,
      XADD, the TAKE and APPLY scripts, ... -- raises :class:`ReplyLostError` at once,
      in both modes: running it again could do its effect twice (a second LPOP drops
      requests, a second TAKE strands messages), so the caller recovers (re-reads the
      state it meant to change: see ``Store.apply``) instead.

    ``reconnected`` is set (and replaced) after the first success that follows a failure
    or a connection found dead, so the runtime can look again at what it may have missed.
    """

    def __init__(self, url: str, *, reconnect: bool = False, max_idle: int = 32) -> None:
        self.url = url
        self.address = Address.from_url(url)
        self.reconnect = reconnect
        self.max_idle = max_idle
        self._idle: list[Connection] = []
        self._closed = False
        self._outage = False  # a failure since the last success
        self.reconnected = trio.Event()  # replaced after each successful reconnect

    async def execute(self, *args: Arg, idempotent: bool | None = None) -> Any:
        """Run one command; ``idempotent`` overrides :func:`is_idempotent`.

        Raises :class:`ResponseError` on an error reply, :class:`ReplyLostError` when a
        non-idempotent command's reply was lost, :class:`RedisUnavailableError` when Redis
        is unreachable (and ``reconnect`` is off). Cancellable at any point: the
        connection is then discarded, and the command may or may not have run.
        """
        retry = is_idempotent(args) if idempotent is None else idempotent
        return await self._with_retry(lambda c: c.execute(*args), retry)

    async def pipeline(
        self, commands: Sequence[Sequence[Arg]], *, idempotent: bool | None = None
    ) -> list[Any]:
        """Run commands in one round trip; raise the first error reply, if any.

        Retried after a lost reply only when every command is idempotent (or
        ``idempotent=True``). Cancellable like :meth:`execute`.
        """
        if not commands:
            return []
        retry = all(is_idempotent(c) for c in commands) if idempotent is None else idempotent
        replies = await self._with_retry(lambda c: c.pipeline(commands), retry)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    async def run_script(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """EVALSHA, loading the script when the server does not know it yet.

        Retried after a lost reply only if ``script.idempotent``. Cancellable like
        :meth:`execute`.
        """
        try:
            return await self.execute(
                "EVALSHA", script.sha, len(keys), *keys, *args, idempotent=script.idempotent
            )
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            return await self.execute(
                "EVAL", script.source, len(keys), *keys, *args, idempotent=script.idempotent
            )

    @contextlib.asynccontextmanager
    async def dedicated(self) -> AsyncIterator[Connection]:
        """A connection of one's own, for blocking commands and pub/sub; closed afterwards.

        Never retries: the caller handles :class:`RedisUnavailableError`. Opening waits
        for Redis with backoff when ``reconnect`` is on. Cancellable.
        """
        conn = await self._connect()
        try:
            yield conn
        finally:
            await conn.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection; the client is then unusable. Shielded."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()

    async def _connect(self) -> Connection:
        delay = 0.05
        while True:
            try:
                return await Connection.open(self.address)
            except RedisUnavailableError:
                if not self.reconnect or self._closed:
                    raise
                self._outage = True
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _acquire(self) -> Connection:
        """A pooled connection the server has not closed, or a new one."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.peer_closed():
                return conn
            # Closed while idle (server restart, CLIENT KILL, timeout): the command has
            # not been written, so trying it on a fresh connection is always safe.
            self._outage = True
            await conn.aclose()
        return await self._connect()

    async def _with_retry(self, call: Any, idempotent: bool) -> Any:
        delay = 0.05
        while True:
            conn = await self._acquire()
            try:
                result = await call(conn)
            except ReplyLostError:
                await conn.aclose()
                self._outage = True
                if not idempotent or not self.reconnect or self._closed:
                    raise
            except RedisUnavailableError:
                # Not written: safe to try again whatever the command.
                await conn.aclose()
                self._outage = True
                if not self.reconnect or self._closed:
                    raise
            except ResponseError:
                self._release(conn)
                raise
            except BaseException:
                await conn.aclose()
                raise
            else:
                self._release(conn)
                if self._outage:
                    self._outage = False
                    self.reconnected.set()
                    self.reconnected = trio.Event()
                return result
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _release(self, conn: Connection) -> None:
        if conn.broken or self._closed or len(self._idle) >= self.max_idle:
            # Not kept: close the socket now (aclose would need an await here).
            if isinstance(conn.stream, trio.SocketStream):
                conn.stream.socket.close()
            return
        self._idle.append(conn)
