"""A Unix-socket proxy in front of a real redis-server that can drop a reply.

``drop_next_reply(b"EVALSHA")`` arms it: the reply to the next command containing that
marker is swallowed and that client connection is closed, after the server ran the
command. This is the one fault CLIENT KILL cannot produce deterministically: a command
that ran whose reply never arrived.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from tinytown.store.connection import _open_unix


class ReplyDropper:
    def __init__(self, target: str, path: Path) -> None:
        self.target = target
        self.path = path
        self.url = f"unix://{path}"
        self._marker: bytes | None = None
        self._before_close: Callable[[], Awaitable[None]] | None = None
        self.dropped = 0

    def drop_next_reply(
        self,
        marker: bytes = b"EVALSHA",
        before_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Swallow the reply to the next command containing ``marker``; run
        ``before_close`` (e.g. another writer) before the client's connection is closed."""
        self._marker = marker
        self._before_close = before_close

    async def _handle(self, client: trio.SocketStream) -> None:
        server = await _open_unix(self.target)
        doomed = False  # the command whose reply is to be dropped went up this connection
        async with client, server, trio.open_nursery() as nursery:

            async def upstream() -> None:
                nonlocal doomed
                async for data in client:
                    if self._marker is not None and self._marker in bytes(data):
                        self._marker = None
                        doomed = True
                    await server.send_all(data)
                nursery.cancel_scope.cancel()

            async def downstream() -> None:
                async for data in server:
                    if doomed:
                        self.dropped += 1
                        if self._before_close is not None:
                            await self._before_close()
                        break
                    await client.send_all(data)
                nursery.cancel_scope.cancel()

            nursery.start_soon(upstream)
            nursery.start_soon(downstream)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ReplyDropper]:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(str(self.path))
        sock.listen()
        listener = trio.SocketListener(sock)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._handle, [listener])
            try:
                yield self
            finally:
                nursery.cancel_scope.cancel()
