#!/usr/bin/env python3
"""A scripted agent CLI that does its work through the town's MCP tools, not ``tt``.

Tinytown runs it like any agent CLI: once per round, the prompt on stdin. It reads the
same directive language as ``scripted_agent.py`` (``;``-separated directives in the
prompt's ``Description:`` and ``Message:`` lines), but acts through an MCP client session
(the ``mcp`` SDK's own client, over stdio) with the town's server, ``tt mcp``:

    complete [RESULT]   complete_task(<task id>, RESULT or "done")
    failtask [REASON]   fail_task(<task id>, REASON or "failed")
    send TO TEXT        send_message(TO, TEXT)            (kind info)
    ask TO TEXT         send_message(TO, TEXT, kind=query)
    inbox               read_inbox(); prints "inbox: TEXT | TEXT ..."
    status              town_status(); prints "status: N agent(s), you are NAME"
    backlog TEXT        backlog_add(TEXT); prints "backlog: <task id>"
    claim TASK          backlog_claim(TASK)
    spawn NAME          spawn_helper(NAME)
    print TEXT          print TEXT
    anything else       printed as is

The server: ``--mcp-config FILE`` (claude's format, as ``tt`` writes it for a round:
``mcpServers.tinytown`` with command, args and env), else ``python -m tinytown mcp`` run
with this process's environment (the runtime's ``TT_AGENT_ID`` makes it act as this
agent). A tool error is printed to stderr and ends the round with exit 1. At the end it
prints "done: N directive(s)" and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scripted_agent import directives  # the shared directive parser


class ToolFailed(Exception):
    pass


def server_params(config: str | None) -> StdioServerParameters:
    if config:
        entry = json.loads(Path(config).read_text())["mcpServers"]["tinytown"]
        return StdioServerParameters(
            command=entry["command"], args=entry.get("args", []), env=entry.get("env")
        )
    return StdioServerParameters(
        command=sys.executable, args=["-m", "tinytown", "mcp"], env=dict(os.environ)
    )


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    result = await client.call_tool(tool, arguments)
    text = result.content[0].text if result.content else ""  # type: ignore[union-attr]
    if result.is_error:
        raise ToolFailed(f"{tool}: {text}")
    return json.loads(text) if text else None


async def execute(client: Client, text: str, task_id: str | None) -> None:
    word, _, rest = text.partition(" ")
    rest = rest.strip()
    task = task_id or os.environ.get("TT_TASK_ID") or ""
    if word == "complete":
        await call(client, "complete_task", task_id=task, result=rest or "done")
    elif word == "failtask":
        await call(client, "fail_task", task_id=task, reason=rest or "failed")
    elif word in ("send", "ask") and " " in rest:
        to, _, message = rest.partition(" ")
        kind = "query" if word == "ask" else "info"
        await call(client, "send_message", to=to, text=message.strip(), kind=kind)
    elif word == "inbox" and not rest:
        found = await call(client, "read_inbox")
        print("inbox: " + " | ".join(m["text"] for m in found["messages"]), flush=True)
    elif word == "status" and not rest:
        status = await call(client, "town_status")
        print(f"status: {len(status['agents'])} agent(s), you are {status['you']}", flush=True)
    elif word == "backlog" and rest:
        added = await call(client, "backlog_add", description=rest)
        print(f"backlog: {added['id']}", flush=True)
    elif word == "claim" and rest:
        await call(client, "backlog_claim", task_id=rest)
    elif word == "spawn" and rest:
        await call(client, "spawn_helper", name=rest)
    elif word == "print":
        print(rest, flush=True)
    else:
        print(text, flush=True)


async def run(config: str | None, prompt: str) -> int:
    todo = directives(prompt)
    async with Client(server_params(config), mode="legacy") as client:
        for text, task_id in todo:
            try:
                await execute(client, text, task_id)
            except ToolFailed as failed:
                print(f"tool error: {failed}", file=sys.stderr, flush=True)
                return 1
    print(f"done: {len(todo)} directive(s)", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="a scripted agent that uses MCP tools")
    parser.add_argument("--mcp-config", help="an MCP config file (claude's format)")
    args, _ = parser.parse_known_args()  # other CLI flags (e.g. a session id) are ignored
    prompt = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    return trio.run(run, args.mcp_config, prompt)


if __name__ == "__main__":
    sys.exit(main())
