"""One connection to Redis on trio: the socket, RESP by hiredis (store/resp.py). The
blocking twin for one-shot commands is store/blocking.py.

Concurrent callers share a connection (auto-pipelining): commands issued while others
wait for their replies are written together in one write, and the replies, which Redis
sends in order, are handed back to each caller in turn (one caller at a time reads for
everyone). Under load that turns N writes, N reads and N wake-ups of the server into one
of each; a lone command costs what it did. Commands that block the server's reply
(BLPOP, XREAD BLOCK, SUBSCRIBE, ...) must not share: the pool gives them a connection of
their own (store/client.py).

It tells the two failures apart that decide whether a command may be tried again (see
store/client.py): raising :class:`RedisUnavailableError` when the command was not sent
(it cannot have run), and its subclass :class:`ReplyLostError` when it was sent but the
reply never came (it may have). A connection that fails fails every caller waiting on it
the same way.

Cancellation: a caller cancelled before its command was written takes it back (never
sent); once written, the caller leaves and its reply is read and dropped by whoever reads
next, so the connection stays usable. Writes are shielded (a few bytes to a local
server; a write that cannot finish within WRITE_DEADLINE breaks the connection). Nothing
is half-read: the reply parser keeps partial data across a cancelled read.
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import ssl
from collections.abc import Sequence
from typing import Any

import trio

from tinytown.errors import RedisUnavailableError, ReplyLostError
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
from tinytown.unixaddress import unix_address

__all__ = ["Address", "Arg", "Connection", "ResponseError"]


#: Seconds a shielded write may take before the connection is given up as broken.
WRITE_DEADLINE = 10.0

#: Commands that hold back the server's replies on their connection (they wait, or
#: turn it into a push channel): never on a shared connection.
BLOCKING = frozenset(
    {
        "BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "BZPOPMAX",
        "BZMPOP", "WAIT", "WAITAOF", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR",
    }
)  # fmt: skip


def blocks(commands: Sequence[Sequence[Arg]]) -> bool:
    """Whether any of ``commands`` may hold back the replies behind it."""
    for command in commands:
        name = _word(command[0]) if command else ""
        if name in BLOCKING:
            return True
        if name in ("XREAD", "XREADGROUP") and any(_word(a) == "BLOCK" for a in command):
            return True
    return False


def _word(arg: Arg) -> str:
    if isinstance(arg, bytes):
        return arg.decode(errors="replace").upper()
    return str(arg).upper()


class _Call:
    """One caller's commands on a shared connection, and their replies as they come."""

    __slots__ = ("commands", "done", "error", "replies", "wake")

    def __init__(self, commands: Sequence[Sequence[Arg]]) -> None:
        self.commands = commands
        self.replies: list[Any] = []
        self.error: BaseException | None = None
        self.done = False
        #: Made when the caller waits (a lone caller never does); set when the call is
        #: done or when it is this caller's turn to read.
        self.wake: trio.Event | None = None

    def finish(self, error: BaseException | None = None) -> None:
        self.error = error
        self.done = True
        if self.wake is not None:
            self.wake.set()


class Connection:
    """One socket to Redis, shared by concurrent callers (see the module docstring)."""

    def __init__(self, stream: trio.abc.Stream, address: Address) -> None:
        self.stream = stream
        self.address = address
        self.reader = reader()
        self.broken = False
        self._queued: list[_Call] = []  # not written yet
        self._sent: collections.deque[_Call] = collections.deque()  # awaiting replies
        self._writing = False
        self._reading = False

    @property
    def busy(self) -> bool:
        """Whether commands are queued or awaiting replies."""
        return bool(self._queued or self._sent)

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
        ReplyLostError: some may have arrived). Cancellable (see the module docstring)."""
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
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled already: nothing sent
        call = _Call(commands)
        self._queued.append(call)
        if not self._writing:
            await self._flush()
        while not call.done:
            if not self._reading:
                await self._read_for(call)
                continue
            call.wake = trio.Event()
            try:
                await call.wake.wait()
            except BaseException:
                self._abandon(call)
                self._next_reader()
                raise
        if call.error is not None:
            raise call.error
        return call.replies

    async def _flush(self) -> None:
        """Write everything queued, including what callers add meanwhile. Under load
        (replies still awaited) the first caller yields once before writing, so that
        concurrent callers' commands join its write; a lone command goes at once.
        Shielded: the commands of other callers ride on it."""
        self._writing = True
        try:
            if self._sent:
                await trio.lowlevel.cancel_shielded_checkpoint()
            while self._queued and not self.broken:
                batch, self._queued = self._queued, []
                self._sent.extend(batch)  # before writing: a reader may be waiting already
                payload = b"".join(pack(c) for call in batch for c in call.commands)
                try:
                    if len(self._sent) == 1:  # only this caller's command rides on it
                        await self._write(payload)
                    else:
                        await self._shielded_write(payload)
                except RedisUnavailableError as exc:
                    # One command whose bytes did not all go out cannot have run;
                    # part of several may have arrived (and run).
                    whole = (
                        len(batch) == 1
                        and len(batch[0].commands) == 1
                        and not isinstance(exc, ReplyLostError)
                    )
                    self._fail(exc, unsent=batch if whole else [])
                    return
                except BaseException:  # cancelled: the bytes may be half out
                    self._fail(RedisUnavailableError("A write was cancelled."), unsent=[])
                    raise
                self._next_reader()
        finally:
            self._writing = False

    async def _shielded_write(self, payload: bytes) -> None:
        """Write what other callers' commands ride on: a caller's cancellation must not
        cut it; a write that cannot finish in WRITE_DEADLINE gives the connection up."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + WRITE_DEADLINE
            await self._write(payload)
        if scope.cancelled_caught:  # some of it may be out
            raise reply_lost(RedisUnavailableError("Writing to Redis timed out."))

    async def _read_for(self, call: _Call) -> None:
        """Read replies, in order, for every caller until ``call`` has all of its own;
        then hand the reading over to the oldest caller still waiting."""
        self._reading = True
        try:
            while not call.done:
                try:
                    reply = await self._read_one()
                except RedisUnavailableError as exc:
                    self._fail(exc, unsent=[])
                    return
                except trio.Cancelled:
                    self._abandon(call)
                    raise
                except BaseException as exc:  # e.g. a protocol error: out of step
                    self._fail(RedisUnavailableError(f"Bad reply from Redis: {exc}."), unsent=[])
                    raise
                head = self._sent[0]
                head.replies.append(reply)
                if len(head.replies) == len(head.commands):
                    self._sent.popleft()
                    head.finish()
        finally:
            self._reading = False
            self._next_reader()

    def _next_reader(self) -> None:
        """When nobody reads, wake the oldest caller waiting for a reply to read."""
        if self._reading:
            return
        for waiting in self._sent:
            if not waiting.done:  # a done call still in line was abandoned
                if waiting.wake is not None:  # else it is about to read by itself
                    waiting.wake.set()
                return

    def _abandon(self, call: _Call) -> None:
        """A cancelled caller: a command not written yet is taken back (never sent); one
        written stays in line, so that its reply is read (and dropped) in turn -- except
        a blocking one (on a connection of its own), which would still take what it
        waits for: that connection is given up."""
        if call in self._queued:
            self._queued.remove(call)
        elif blocks(call.commands):
            self._fail(RedisUnavailableError("A blocking command was cancelled."), unsent=[])
        call.done = True

    def _fail(self, exc: RedisUnavailableError, *, unsent: list[_Call]) -> None:
        """The connection is lost: every caller learns whether its command was sent, and
        a caller still reading is woken (the socket is closed)."""
        self.close_now()
        for call in self._sent:
            if call not in unsent:
                call.finish(reply_lost(exc))
        for call in [*unsent, *self._queued]:
            call.finish(RedisUnavailableError(str(exc)))
        self._sent.clear()
        self._queued.clear()

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
        stream = self.stream
        if isinstance(stream, trio.SSLStream):  # TLS: close the socket underneath, so a
            stream = stream.transport_stream  # caller blocked reading is woken too
        if isinstance(stream, trio.SocketStream):
            stream.socket.close()

    async def aclose(self) -> None:
        self.broken = True
        with trio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await self.stream.aclose()


async def _open_unix(path: str) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with unix_address(path) as address:  # a deep town's socket too
            await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)
