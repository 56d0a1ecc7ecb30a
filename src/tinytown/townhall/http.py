"""``tt mcp --http``: the same server over the SDK's streamable HTTP transport, under trio.

The SDK hands out a Starlette (ASGI) app; its own runner uses uvicorn, which runs only on
asyncio. Hypercorn has a trio worker (``hypercorn.trio.serve``) that runs the app inside
our ``trio.run``, so the HTTP server, the SDK's session manager (anyio on trio) and the
trio services share one event loop, as with stdio.

Access: a bearer token (``tt mcp token new``; only its SHA-256 is stored). When one
exists, every request must carry ``Authorization: Bearer <token>``; without one the server
binds only to a loopback address (anything else is refused before it starts). On
loopback the SDK's DNS-rebinding protection (Host/Origin checks) is on as well.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from mcp.server.mcpserver import MCPServer

from tinytown.services.mcp import token as mcptoken
from tinytown.services.mcp.token import check_exposure

MCP_PATH = "/mcp"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def require_token(app: ASGIApp, digest: str) -> ASGIApp:
    """Wrap ``app`` so that an HTTP request without the right bearer token gets 401."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope.get("headers") or []).get(b"authorization", b"")
            scheme, _, token = header.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not mcptoken.verify(token.strip(), digest):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"www-authenticate", b'Bearer realm="tinytown"'),
                        ],
                    }
                )
                await send(
                    {"type": "http.response.body", "body": b"A valid bearer token is needed.\n"}
                )
                return
        await app(scope, receive, send)

    return guarded


def http_app(app: MCPServer, host: str, digest: str | None) -> ASGIApp:
    """The ASGI app serving ``app`` at :data:`MCP_PATH` (token-guarded when ``digest``)."""
    starlette: ASGIApp = app.streamable_http_app(streamable_http_path=MCP_PATH, host=host)
    return starlette if digest is None else require_token(starlette, digest)


async def serve_http(
    app: MCPServer,
    host: str,
    port: int,
    digest: str | None,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``task_status.started`` gets the
    endpoint URL (with the real port when ``port`` is 0). Raises ConfigError for a
    non-loopback host without a token (before binding). Cancellable: open connections are
    dropped and the session manager's task group is cancelled with it."""
    check_exposure(host, digest)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.loglevel = "WARNING"
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(http_app(app, host, digest), config, task_status=task_status)  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(run)
        task_status.started(urls[0] + MCP_PATH)
