"""``tt mcp``: the town's MCP server (stdio, or streamable HTTP), and its access token."""

from __future__ import annotations

import argparse
import signal
from typing import Any

import trio

from tinytown.cli.context import Context, UsageError
from tinytown.errors import RedisUnavailableError, TinytownError
from tinytown.services.mcp import token as mcptoken
from tinytown.services.town import Town

#: How long the server waits for Redis to say who TT_AGENT_ID is before giving up.
IDENTITY_TIMEOUT = 30.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "mcp",
        help="serve the town's tools over MCP (stdio for an agent's CLI, or --http)",
        usage="tt mcp [--http [--bind HOST:PORT]] | tt mcp token new",
        description=(
            "Run the town's MCP server. Over stdio (the default) an agent's CLI starts it:\n"
            "with TT_AGENT_ID set it acts as that agent (its messages are signed by it; it\n"
            "may complete, fail or claim only that agent's tasks); without, as the\n"
            "supervisor, with the supervisor's tools too (assign, interrupt, resume, close,\n"
            "kill, broadcast). --http serves the supervisor's server over streamable HTTP at\n"
            "http://HOST:PORT/mcp for people's AI clients; a token ('tt mcp token new') is\n"
            "then required on every request, and without one only a loopback address may\n"
            "be bound. See docs/mcp.md."
        ),
    )
    p.add_argument("--http", action="store_true", help="serve over streamable HTTP")
    p.add_argument(
        "--bind",
        metavar="HOST:PORT",
        help=f"where --http listens (default: {mcptoken.DEFAULT_BIND})",
    )
    p.set_defaults(handler=cmd_mcp, town="none")
    verbs = p.add_subparsers(title="commands", metavar="COMMAND", required=False)
    token = verbs.add_parser(
        "token",
        prog="tt mcp token",
        usage="tt mcp token new",
        help="the bearer token of tt mcp --http",
        description="Manage the bearer token people's AI clients send to tt mcp --http.",
    )
    token.set_defaults(handler=cmd_token_help, town="none", parser_of=token)
    token_verbs = token.add_subparsers(title="commands", metavar="COMMAND", required=False)
    new = token_verbs.add_parser(
        "new",
        prog="tt mcp token new",
        help="make a new token (replacing the old one) and print it once",
        description=(
            "Make a new random token, store only its SHA-256 in .tt/mcp/token.json (never\n"
            "in tinytown.toml), and print it once: it cannot be shown again. The previous\n"
            "token stops working. Clients send it as 'Authorization: Bearer TOKEN'."
        ),
    )
    new.set_defaults(handler=cmd_token_new, town="none")


async def cmd_token_help(ctx: Context, args: argparse.Namespace) -> int:
    args.parser_of.print_help(ctx.out.stdout)
    return 2


async def cmd_token_new(ctx: Context, args: argparse.Namespace) -> int:
    root = ctx.root()
    token = mcptoken.new_token(root)
    ctx.out.line(token)
    print(
        f"tt: the token above is shown once; its hash is in {mcptoken.token_path(root)}.",
        file=ctx.out.stderr,
        flush=True,
    )
    return 0


async def cmd_mcp(ctx: Context, args: argparse.Namespace) -> int:
    """Serve until the client leaves (stdio) or until interrupted (``--http``)."""
    if args.bind and not args.http:
        raise UsageError("--bind goes with --http.")
    if args.http and ctx.agent_id:
        raise TinytownError(
            "tt mcp --http serves the supervisor's tools; an agent (TT_AGENT_ID is set)"
            " cannot start it."
        )
    root = ctx.root()
    digest = mcptoken.stored_digest(root) if args.http else None
    host, port = mcptoken.parse_bind(args.bind or mcptoken.DEFAULT_BIND)
    if args.http:
        mcptoken.check_exposure(host, digest)  # before anything starts
    town = await Town.connect(root, search=False, reconnect=True)  # rides out outages
    try:
        if town.started_server:
            print(f"Started the town's Redis ({town.url}).", file=ctx.out.stderr, flush=True)
        agent = None
        if ctx.agent_id and not args.http:
            try:
                with trio.fail_after(IDENTITY_TIMEOUT):
                    agent = await town.agents.get(ctx.agent_id)
            except trio.TooSlowError:
                raise RedisUnavailableError(
                    f"The Redis of town {town.name} does not answer."
                ) from None
        # The SDK takes seconds to import: only now that the server will run (and the
        # HTTP transport, hypercorn, only for --http).
        from tinytown.townhall import server
        from tinytown.townhall.caller import Caller

        caller = Caller(town, agent)
        app = server.build_server(caller, allow_spawn=bool(town.config.setting("mcp.allow_spawn")))
        if not args.http:
            await server.serve_stdio(app)
            return 0
        from tinytown.townhall import http

        # Ctrl-C or SIGTERM cancels the server (open connections are dropped), instead of
        # a KeyboardInterrupt landing wherever the server happens to be.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(http.serve_http, app, host, port, digest)
                guard = "bearer token required" if digest else "no token: loopback only"
                ctx.out.line(
                    f"MCP server of town {town.name} on {url} ({guard}); Ctrl-C stops it."
                )
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
        return 0
    finally:
        await town.aclose()
