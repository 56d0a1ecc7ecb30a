"""The town's MCP server handed to each round of a CLI that takes one (issue 13 point 4):
claude gets ``--mcp-config`` naming a file that runs ``tt mcp`` as the agent, and the
prompt says the tools exist; ``mcp.agents = false`` or a text CLI keeps the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import StartRuntime
from tests.runtime.conftest import eventually
from tinytown import TaskState
from tinytown.services.mcp.wiring import MCP_PROMPT_NOTE, read_entry
from tinytown.services.town import Town

pytestmark = pytest.mark.usefixtures("fake_clis")


async def _run_task(town: Town, name: str, cli: str, text: str) -> str:
    handle = await town.spawn_agent(name, cli)
    task_id = await handle.assign(text)

    async def done() -> bool:
        return (await town.tasks.get(task_id)).state is TaskState.COMPLETED

    await eventually(done, timeout=60)
    return (await town.tasks.get(task_id)).result or ""


def _calls(bin_dir: Path) -> list[list[str]]:
    lines = (bin_dir / "calls.jsonl").read_text().splitlines()
    return [json.loads(line)["argv"] for line in lines]


async def test_a_claude_round_gets_the_towns_server_as_its_agent(
    town: Town, start_runtime: StartRuntime, fake_clis: Path
) -> None:
    await start_runtime()
    result = await _run_task(town, "c", "claude", "mcp; echo-prompt")
    assert "mcp tinytown" in result  # the fake read the server from --mcp-config
    assert MCP_PROMPT_NOTE in result
    argv = _calls(fake_clis)[-1]
    config = Path(argv[argv.index("--mcp-config") + 1])
    assert config == town.root / ".tt" / "mcp" / "c.json"
    entry = read_entry(config)
    agent = await town.agents.resolve("c")
    assert entry["args"][-3:] == ["mcp", "-t", str(town.root)]
    assert entry["env"]["TT_AGENT_ID"] == agent.id


async def test_mcp_agents_off_and_text_clis_keep_the_command_line(
    town: Town, start_runtime: StartRuntime, fake_clis: Path
) -> None:
    town.config.data["mcp"] = {"agents": False}
    town.config.save()
    await start_runtime()
    result = await _run_task(town, "c", "claude", "mcp; echo-prompt")
    assert "mcp -" in result and MCP_PROMPT_NOTE not in result
    assert "--mcp-config" not in _calls(fake_clis)[-1]
    scripted = await _run_task(town, "s", "scripted", "echo-prompt")
    assert MCP_PROMPT_NOTE not in scripted and "tt task complete" in scripted
