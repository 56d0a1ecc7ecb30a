"""A small trio-native Redis client: trio sockets, hiredis for RESP, redis-py for URLs.

redis-py's asyncio client does not run on trio, and a thread per command costs ~5x
(see docs/architecture.md). This adapter reuses redis-py's URL parsing and hiredis'
command packing and reply parsing; it only owns the socket (store/connection.py) and
the pool (here).

Outside a trio run (a one-shot command driven by store/oneshot.py) the pool opens
blocking connections instead (store/blocking.py): the same commands, retries and errors,
with ``async`` methods that never suspend, and trio is not imported at all.

Under trio, concurrent commands share one connection and go out together
(auto-pipelining, store/connection.py); a command that blocks the server's replies
(BLPOP, XREAD BLOCK, ...) gets a pooled connection of its own.

Cancellation: a caller cancelled on the shared connection leaves it in step (its reply,
if its command was written, is read and dropped). A pooled connection whose command was
cancelled half-way is closed rather than returned to the pool. Nothing is half-read.

Retries (see :class:`Redis`): a failure BEFORE a command was written (no connection, a
pooled connection found dead, a write that did not go through) is retried for any
command; a failure AFTER it was written (the reply was lost: the command may or may not
have run) is retried only for idempotent commands (:data:`IDEMPOTENT`, scripts declared
``idempotent``, or ``idempotent=True``); any other command raises
:class:`~tinytown.errors.ReplyLostError`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from tinytown.errors import RedisUnavailableError, ReplyLostError
from tinytown.store.blocking import BlockingConnection
from tinytown.store.resp import IDEMPOTENT, Address, Arg, ResponseError, is_idempotent

if TYPE_CHECKING:
    import trio

    from tinytown.store.connection import Connection

try:  # CPython's own SHA-1: hashlib would load OpenSSL (~3 ms of every `tt` command)
    from _sha1 import sha1 as _sha1
except ImportError:  # a Python built without it
    from hashlib import sha1 as _sha1

__all__ = [
    "IDEMPOTENT",
    "Address",
    "Arg",
    "BlockingConnection",
    "Connection",
    "Redis",
    "ResponseError",
    "Script",
    "is_idempotent",
]


class Link(Protocol):
    """A connection of either kind (trio's :class:`Connection`, :class:`BlockingConnection`)."""

    broken: bool

    async def execute(self, *args: Arg) -> Any: ...
    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]: ...
    async def send(self, *args: Arg) -> None: ...
    async def read_reply(self) -> Any: ...
    def peer_closed(self) -> bool: ...
    def close_now(self) -> None: ...
    async def aclose(self) -> None: ...


def in_trio() -> bool:
    """Whether this thread runs inside ``trio.run``, without importing trio (nor loading
    a deferred one, see tinytown/entry.py: only a loaded trio can be running)."""
    if "trio._core._run" not in sys.modules:
        return False
    import trio

    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def __getattr__(name: str) -> Any:
    if name == "Connection":  # imports trio: only when asked for
        from tinytown.store.connection import Connection

        return Connection
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        return _sha1(self.source.encode()).hexdigest()


class Redis:
    """Connections to one server: under trio one shared, auto-pipelined
    :class:`Connection` plus a pool for blocking commands; outside trio a pool of
    blocking connections.

    Which failures are retried:

    * A pooled connection the server closed while it sat idle (server restart, CLIENT
      KILL, idle timeout; checked with a zero-timeout poll before each use) is replaced
      by a fresh one before anything is written, in both modes.
    * Before the command was written (cannot connect, a write that did not go through):
      the command cannot have run. With ``reconnect=True`` (the runtime) the client waits
      with exponential backoff (50 ms doubling to 2 s) and tries again until Redis is
      back or the caller is cancelled; without it (one-shot commands) it raises
      :class:`RedisUnavailableError`.
    * After it was written (the reply was lost: the command may or may not have run):
      with ``reconnect=True``, idempotent commands (:func:`is_idempotent`: reads, PING,
      MULTI/EXEC around reads; pipelines made only of them; scripts declared
      ``idempotent``; or an explicit ``idempotent=True``) are retried as above. Every
      other command -- LPOP, RPUSH, XADD, the TAKE and APPLY scripts, ... -- raises
      :class:`ReplyLostError` at once, in both modes: running it again could do its
      effect twice (a second LPOP drops requests, a second TAKE strands messages), so
      the caller recovers instead (re-reads the state it meant to change: see
      ``Store.apply``). Without ``reconnect`` every lost reply raises ReplyLostError.

    ``reconnected`` is set (and replaced) after the first success that follows a failure
    or a connection found dead, so the runtime can look again at what it may have missed.
    """

    def __init__(self, url: str, *, reconnect: bool = False, max_idle: int = 32) -> None:
        self.url = url
        self.address = Address.from_url(url)
        self.reconnect = reconnect
        self.max_idle = max_idle
        self._idle: list[Link] = []
        self._shared: Connection | None = None  # trio: one connection for concurrent callers
        self._closed = False
        self._outage = False  # a failure since the last success
        self._reconnected: trio.Event | None = None  # made when first asked for

    @property
    def reconnected(self) -> trio.Event:
        """Set (then replaced) after each successful reconnect; made on first use, so a
        one-shot command never imports trio for it."""
        if self._reconnected is None:
            import trio

            self._reconnected = trio.Event()
        return self._reconnected

    async def execute(self, *args: Arg, idempotent: bool | None = None) -> Any:
        """Run one command; ``idempotent`` overrides :func:`is_idempotent`.

        Raises :class:`ResponseError` on an error reply, :class:`ReplyLostError` when a
        non-idempotent command's reply was lost, :class:`RedisUnavailableError` when Redis
        is unreachable (and ``reconnect`` is off). Cancellable at any point: the
        connection is then discarded, and the command may or may not have run.
        """
        retry = is_idempotent(args) if idempotent is None else idempotent
        return await self._with_retry(lambda c: c.execute(*args), retry, (args,))

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

        async def call(conn: Link) -> list[Any]:
            replies = await conn.pipeline(commands)
            refused = [r for r in replies if isinstance(r, ResponseError) and _not_run(r)]
            if refused and len(refused) == len(replies):
                raise refused[0]  # none ran: retried like a refused single command
            if refused:  # some ran, some were refused: the outcome is partial
                raise ReplyLostError(f"Redis refused part of a pipeline: {refused[0]}.")
            return replies

        replies = await self._with_retry(call, retry, commands)
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
    async def dedicated(self) -> AsyncIterator[Link]:
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
        if self._shared is not None:
            idle.append(self._shared)
            self._shared = None
        for conn in idle:
            await conn.aclose()

    async def _connect(self) -> Link:
        delay = 0.05
        while True:
            try:
                if not in_trio():
                    return await BlockingConnection.open(self.address)
                from tinytown.store.connection import Connection

                return await Connection.open(self.address)
            except RedisUnavailableError:
                if not self.reconnect or self._closed:
                    raise
                self._outage = True
            await _pause(delay)
            delay = min(delay * 2, 2.0)

    async def _acquire(self, commands: Sequence[Sequence[Arg]]) -> Link:
        """The connection for ``commands``: under trio the shared one (auto-pipelining,
        see store/connection.py) unless a command blocks the server's replies; else a
        pooled connection the server has not closed, or a new one."""
        blocking = not in_trio()
        if not blocking:
            from tinytown.store.connection import blocks

            if not blocks(commands):
                for stale in [c for c in self._idle if isinstance(c, BlockingConnection)]:
                    self._idle.remove(stale)
                    stale.close_now()  # made outside trio: never handed to trio
                return await self._acquire_shared()
        while self._idle:
            conn = self._idle.pop()
            if isinstance(conn, BlockingConnection) != blocking:
                conn.close_now()  # made outside trio, now inside (or back): never mixed
                continue
            if not conn.peer_closed():
                return conn
            # Closed while idle (server restart, CLIENT KILL, timeout): the command has
            # not been written, so trying it on a fresh connection is always safe.
            self._outage = True
            await conn.aclose()
        return await self._connect()

    async def _acquire_shared(self) -> Link:
        shared = self._shared
        if shared is not None and not shared.broken:
            if shared.busy or not shared.peer_closed():
                return shared
            # Closed while idle: nothing of ours is on it; a fresh one is always safe.
            self._outage = True
            self._shared = None
            await shared.aclose()
        conn = await self._connect()
        if self._shared is not None and not self._shared.broken:
            self._release(conn)  # another caller made one meanwhile: share that
            return self._shared
        self._shared = conn  # type: ignore[assignment]  # trio mode: a Connection
        return conn

    async def _with_retry(
        self, call: Any, idempotent: bool, commands: Sequence[Sequence[Arg]]
    ) -> Any:
        delay = 0.05
        while True:
            conn = await self._acquire(commands)
            try:
                result = await call(conn)
            except ReplyLostError:
                await self._discard(conn)
                self._outage = True
                if not idempotent or not self.reconnect or self._closed:
                    raise
            except RedisUnavailableError:
                # Not written: safe to try again whatever the command.
                await self._discard(conn)
                self._outage = True
                if not self.reconnect or self._closed:
                    raise
            except ResponseError as exc:
                self._release(conn)
                if not _not_run(exc):
                    raise
                # The server refused before running it (still loading its data after a
                # restart, or busy with a script): like a failed write, safe to retry.
                self._outage = True
                if not self.reconnect or self._closed:
                    raise RedisUnavailableError(f"Redis is not ready: {exc}.") from exc
            except BaseException:
                if conn is not self._shared or conn.broken:  # the shared one stays in step
                    await self._discard(conn)
                raise
            else:
                self._release(conn)
                if self._outage:
                    self._outage = False
                    if self._reconnected is not None:  # nobody holds one otherwise
                        self._reconnected.set()
                        self._reconnected = None
                return result
            await _pause(delay)
            delay = min(delay * 2, 2.0)

    async def _discard(self, conn: Link) -> None:
        if conn is self._shared:
            self._shared = None
        await conn.aclose()

    def _release(self, conn: Link) -> None:
        if conn is self._shared:
            if conn.broken:
                self._shared = None
                conn.close_now()
            return
        if conn.broken or self._closed or len(self._idle) >= self.max_idle:
            conn.close_now()  # not kept (aclose would need an await here)
            return
        self._idle.append(conn)


async def _pause(delay: float) -> None:
    """The backoff between retries: trio's sleep inside trio, a blocking one outside."""
    if in_trio():
        import trio

        await trio.sleep(delay)
    else:
        import time

        time.sleep(delay)


def _not_run(exc: ResponseError) -> bool:
    """True for error replies that mean the server did not run the command at all."""
    return str(exc).startswith(("LOADING", "BUSY ", "MASTERDOWN", "TRYAGAIN"))
