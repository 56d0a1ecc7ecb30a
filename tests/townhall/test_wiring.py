"""The per-agent MCP config file and what each CLI kind is handed (services/mcp/wiring.py).
That the file really starts a working server is tests/townhall/test_stdio.py's test."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

from tests.townhall.test_tools import AGENT_TOOLS
from tinytown.services.agentcli.spec import codex_mcp_overrides
from tinytown.services.mcp import wiring as mcpwiring
from tinytown.services.town import Town


async def test_config_file_runs_tt_mcp_as_the_agent(town: Town) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    env = {
        "REDIS_URL": "unix:///x/redis.sock",
        "TT_TOWN": town.name,
        "PATH": "/bin",
        "SECRET_TOKEN": "never copied",
        "TT_AGENT_ID": "someone else",
    }
    path = mcpwiring.mcp_config_for(town.root, ann, env)
    assert path == town.root / ".tt" / "mcp" / "ann.json"
    assert path.stat().st_mode & 0o777 == 0o600  # it holds the agent's Redis URL
    entry = json.loads(path.read_text())["mcpServers"]["tinytown"]
    assert entry["command"] == sys.executable
    assert entry["args"] == ["-m", "tinytown", "mcp", "-t", str(town.root)]
    assert entry["env"] == {
        "REDIS_URL": "unix:///x/redis.sock",
        "TT_TOWN": town.name,
        "PATH": "/bin",
        "TT_TOWN_DIR": str(town.root),
        "TT_AGENT_ID": ann.id,  # its own identity, whatever the environment said
        "TT_AGENT_NAME": "ann",
    }
    again = mcpwiring.mcp_config_for(town.root, ann, {**env, "REDIS_URL": "redis://new"})
    assert again == path and mcpwiring.read_entry(path)["env"]["REDIS_URL"] == "redis://new"
    assert [p.name for p in path.parent.iterdir()] == ["ann.json"]  # no temporary left


async def test_codex_gets_the_same_server_as_toml_overrides(town: Town) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    path = mcpwiring.mcp_config_for(town.root, ann, {"PATH": 'odd "quoted" \\ path'})
    flags = codex_mcp_overrides(path)  # what the codex CLI spec hands codex for this file
    assert set(flags[0::2]) == {"-c"}
    parsed: dict[str, object] = {}
    for setting in flags[1::2]:
        key, _, value = setting.partition("=")
        parsed[key] = tomllib.loads(f"v = {value}")["v"]  # codex parses each value as TOML
    entry = mcpwiring.read_entry(path)
    expected = {f"mcp_servers.tinytown.{k}": entry[k] for k in ("command", "args")}
    expected |= {f"mcp_servers.tinytown.env.{k}": v for k, v in entry["env"].items()}
    assert parsed == expected


def test_env_per_kind() -> None:
    path = Path("/town/.tt/mcp/ann.json")
    for kind in ("gemini", "gemini-json", "gemini-safe"):
        assert mcpwiring.mcp_env(kind, path) == {"GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(path)}
    for kind in ("claude", "claude-json", "codex", "codex-jsonl", "text"):
        assert mcpwiring.mcp_env(kind, path) == {}


def test_prompt_note_names_real_tools() -> None:
    named = set(re.findall(r"\b[a-z]+_[a-z_]+\b", mcpwiring.MCP_PROMPT_NOTE))
    assert named and named <= AGENT_TOOLS


def test_the_repl_refuses_tt_mcp() -> None:
    from tinytown.repl.commands import refusal

    refused = refusal(["mcp", "--http"])
    assert refused is not None and "run 'tt mcp' in a shell" in refused
