"""A real town (`tt run --no-repl` in its own process) whose agent CLI is actors/mcp_agent.py:
the agent reports and talks through MCP tools only, over the SDK's stdio client."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.conftest import REPO
from tests.runtime.conftest import eventually
from tinytown.model import MessageType, TaskState
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.town import Town

MCP_AGENT = REPO / "actors" / "mcp_agent.py"


async def test_agent_completes_its_task_through_mcp(town: Town, tt_env: dict[str, str]) -> None:
    town.config.data["agent_clis"]["mcp"] = {"command": f"{sys.executable} {MCP_AGENT}"}
    town.config.save()
    await town.spawn_agent("ann", "mcp")
    await town.spawn_agent("bob")
    log = (town.root / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinytown", "run", "--no-repl"],
        cwd=town.root,
        env=tt_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        task = await town.tasks.assign("ann", "status; send bob hello from mcp; complete via mcp")

        async def finished() -> bool:
            return (await town.tasks.get(task.id)).state.terminal

        await eventually(finished, timeout=120)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    done = await town.tasks.get(task.id)
    agent_log = (town.root / ".tt" / "logs" / "ann.log").read_text()
    assert done.state is TaskState.COMPLETED, agent_log
    assert done.result == "via mcp"
    assert "status: 2 agent(s), you are ann" in agent_log
    ann = await town.agents.resolve("ann")
    bob = await town.agents.resolve("bob")
    queued, inflight = await town.messages.inbox(bob.id)
    notes = [m for m in queued + inflight if m.type is MessageType.INFORMATIONAL]
    assert [(m.sender, m.text) for m in notes] == [(ann.id, "hello from mcp")]
    mail, _ = await town.messages.inbox(SUPERVISOR_ID)  # the assigner heard it from ann
    assert any(m.type is MessageType.TASK_DONE and m.sender == ann.id for m in mail)
