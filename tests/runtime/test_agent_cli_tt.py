"""The agent-CLI round behaviours through ``tt``, across processes: a detached town whose
agents run the fake claude (behind tests/runtime/clis/flaky.py), driven by ``tt``."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.runtime.conftest import eventually
from tinytown import AgentState, TaskState
from tinytown.services.town import Town

FLAKY = Path(__file__).resolve().parent / "clis" / "flaky.py"
CLAUDE = "claude --print --output-format json --dangerously-skip-permissions"


@pytest.fixture(autouse=True)
def flaky_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "plan"
    path.write_text("")
    monkeypatch.setenv("FLAKY_PLAN", str(path))  # before tt_env copies the environment
    return path


async def test_setup_failure_and_budget_through_tt(  # type: ignore[no-untyped-def]
    town: Town, tt, flaky_plan: Path
) -> None:
    town.config.data["agent_clis"]["fclaude"] = {
        "command": f"{sys.executable} {FLAKY} {CLAUDE}",
        "format": "claude-json",
    }
    town.config.save()
    flaky_plan.write_text("notloggedin\n")
    assert tt("config", "budget.agent_usd", "0.002").returncode == 0
    started = tt("run", "--detach")
    assert started.returncode == 0, started.stderr
    holder = await town.runtime()
    assert holder is not None
    try:
        assert tt("spawn", "s", "--cli", "fclaude").returncode == 0
        assigned = tt("assign", "s", "print after login; cost 0.001", "--json")
        assert assigned.returncode == 0, assigned.stderr
        task_id = json.loads(assigned.stdout)["id"]

        async def paused() -> str | None:
            agent = await town.agents.resolve("s")
            return agent.state_reason if agent.state is AgentState.PAUSED else None

        reason = await eventually(paused, timeout=30)
        assert isinstance(reason, str) and reason.startswith("setup: Not logged in")
        assert (await town.tasks.get(task_id)).attempts == 0
        resumed = tt("resume", "s")
        assert resumed.returncode == 0, resumed.stderr

        async def completed() -> bool:
            return (await town.tasks.get(task_id)).state is TaskState.COMPLETED

        await eventually(completed, timeout=30)
        task = await town.tasks.get(task_id)
        assert task.attempts == 1 and task.result and "after login" in task.result
        assert task.usage.cost_usd == 0.001
        # A second paid round reaches the agent's budget ($0.002): paused after it.
        second = json.loads(tt("assign", "s", "print more; cost 0.001", "--json").stdout)["id"]
        reason = await eventually(paused, timeout=30)
        assert isinstance(reason, str) and reason.startswith("budget: agent limit $")
        assert (await town.tasks.get(second)).state is TaskState.COMPLETED
        third = json.loads(tt("assign", "s", "print never", "--json").stdout)["id"]
        assert tt("config", "budget.agent_usd", "1").returncode == 0  # raised
        assert tt("resume", "s").returncode == 0
        waited = tt("wait", "s", "--idle", "--timeout", "30")
        assert waited.returncode == 0, waited.stderr
        assert (await town.tasks.get(third)).state is TaskState.COMPLETED
    finally:
        os.kill(holder.pid, signal.SIGTERM)

    async def released() -> bool:
        return await town.runtime() is None

    await eventually(released, timeout=20)
