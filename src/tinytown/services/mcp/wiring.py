"""Handing ``tt mcp`` to an agent's CLI: the per-agent MCP config file and the prompt note.

Each round of an agent whose CLI takes MCP servers gets the town's server configured
(``[mcp] agents``, default on). :func:`mcp_config_for` writes ``.tt/mcp/<agent>.json`` in
the common ``{"mcpServers": {...}}`` shape that claude (``--mcp-config FILE``), gemini (a
settings file) and desktop clients read: it runs ``tt mcp`` with this interpreter and the
agent's identity. How each CLI is pointed at it is the CLI spec's business
(``CliSpec.round_argv(..., mcp_config=path)``: ``--mcp-config`` for claude, ``-c
mcp_servers...`` overrides for codex, which has no config-file flag), helped by
:func:`mcp_env` (gemini reads a settings file named by an environment variable).

The file holds the agent's Redis URL (never the admin password: see
:mod:`tinytown.services.access`), so it is written 0600 inside the 0700 ``.tt/``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tinytown.model import Agent

#: The server's name in every client's configuration (tools show as ``tinytown`` tools).
SERVER_NAME = "tinytown"
#: Where the per-agent files go, relative to the town root.
MCP_DIR = Path(".tt") / "mcp"
#: Variables of the round's environment the server needs (codex starts MCP servers with
#: a minimal environment, so the file carries them rather than relying on inheritance):
#: the locale too, so the server runs as the town's command server does (same text
#: encoding: then `tt mcp` is served by it, docs/architecture.md "The command server").
PASSED_ENV = (
    "TT_TOWN", "TT_TOWN_DIR", "REDIS_URL", "TT_HOME", "PATH", "PYTHONPATH",
    "LANG", "LC_ALL", "LC_CTYPE",
)  # fmt: skip

#: One sentence for a round's prompt when the CLI has the server (runtime/prompt.py).
MCP_PROMPT_NOTE = (
    "Your CLI has the Tinytown MCP server 'tinytown': use its tools (complete_task,"
    " fail_task, send_message, read_inbox, list_tasks, backlog_add, town_status) to report"
    " and coordinate, instead of running the tt command line."
)


def server_entry(town_root: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The stdio server entry: this interpreter running ``tt mcp`` for the town, with
    ``env`` (the agent's identity and the town's variables)."""
    return {
        "command": sys.executable,
        "args": ["-m", "tinytown", "mcp", "-t", str(town_root)],
        "env": dict(env),
    }


def mcp_config_for(town_root: Path, agent: Agent, env: Mapping[str, str] | None = None) -> Path:
    """Write the agent's MCP config file and return its path (``.tt/mcp/<name>.json``).

    ``env`` is the round's environment (default: this process's); the variables the server
    needs are copied from it (:data:`PASSED_ENV`) and the agent's identity is added.
    Rewritten atomically each call (a running CLI reads either the old or the new file),
    so a changed Redis URL reaches the next round."""
    source = os.environ if env is None else env
    passed = {k: source[k] for k in PASSED_ENV if source.get(k)}
    passed.setdefault("TT_TOWN_DIR", str(town_root))
    passed.update({"TT_AGENT_ID": agent.id, "TT_AGENT_NAME": agent.name})
    config = {"mcpServers": {SERVER_NAME: server_entry(town_root, passed)}}
    folder = town_root / MCP_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{agent.name}.json"
    tmp = folder / f".{agent.name}.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path


def read_entry(path: Path) -> dict[str, Any]:
    """The ``tinytown`` server entry of a file written by :func:`mcp_config_for`."""
    data = json.loads(path.read_text())
    entry = data["mcpServers"][SERVER_NAME]
    assert isinstance(entry, dict)
    return entry


def mcp_env(kind: str, path: Path) -> dict[str, str]:
    """Environment a round of a CLI of ``kind`` (a preset name or a CLI spec format, e.g.
    ``gemini`` or ``gemini-json``) needs to find the server file: gemini reads its settings
    (``mcpServers`` included) from ``GEMINI_CLI_SYSTEM_SETTINGS_PATH``; the others take
    flags (nothing here)."""
    if kind.split("-")[0] == "gemini":
        return {"GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(path)}
    return {}
