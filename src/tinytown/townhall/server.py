"""Building the MCP server of one town for one identity, and serving it over stdio.

The SDK (``mcp`` 2.x, ``MCPServer``) is written against anyio, which runs on trio's event
loop when it is called from inside ``trio.run``: anyio detects the running loop and uses
its trio backend (its task groups are trio nurseries, its threads ``trio.to_thread``).
So ``tt mcp`` runs like every other command, in the ``trio.run`` of ``tt``'s main, and the
tools call the trio services directly, on the same connection pool, with no bridge
between event loops. The stdio transport reads stdin in a worker thread (anyio's file
wrapper), so a blocked read never blocks the loop; the server returns when the client
closes its end.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

import tinytown
from tinytown.townhall.agent_tools import register_agent_tools
from tinytown.townhall.caller import Caller
from tinytown.townhall.resources import register_resources
from tinytown.townhall.supervisor_tools import register_supervisor_tools

SERVER_NAME = "tinytown"


def instructions(caller: Caller) -> str:
    who = (
        f"You act as agent {caller.name!r}: messages you send are signed by it, and you may"
        " only complete, fail or claim tasks for it."
        if caller.agent
        else "You act as the town's supervisor (the people running it)."
    )
    return (
        f"Tools for Tinytown town {caller.town.name!r}, a group of AI coding agents"
        f" coordinated through Redis. {who} Use town_status for an overview, list_tasks and"
        " get_task for work, complete_task or fail_task when a task is finished,"
        " send_message to talk to agents or the supervisor, read_inbox for notes."
    )


def build_server(caller: Caller, *, allow_spawn: bool) -> MCPServer:
    """The server for ``caller``: the agent tools (``spawn_helper`` with ``allow_spawn``),
    plus the supervisor-level tools when the caller is the supervisor, and the resources."""
    app: MCPServer = MCPServer(
        SERVER_NAME,
        instructions=instructions(caller),
        version=tinytown.__version__,
        log_level="WARNING",  # stderr of a CLI's MCP child: only what matters
    )
    register_agent_tools(app, caller, allow_spawn=allow_spawn)
    if caller.agent is None:
        register_supervisor_tools(app, caller)
    register_resources(app, caller)
    return app


async def serve_stdio(app: MCPServer) -> None:
    """Serve ``app`` on stdin/stdout until the client closes stdin. Call it inside
    ``trio.run`` (anyio's trio backend). Cancellable: the session ends, the stdin reader
    thread is abandoned (it ends with the process)."""
    await app.run_stdio_async()
