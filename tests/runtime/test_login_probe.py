"""A round that could not reach its CLI's service asks the CLI, for free, whether it is
logged in (issue 17): codex without a login never exits by itself ("Reconnecting...
waiting for network"); its round is stopped early, and instead of being retried for ever
the agent pauses for setup with ``codex login status``'s words, its task kept."""

from __future__ import annotations

import pytest

from tests.conftest import StartRuntime
from tests.runtime.conftest import eventually
from tinytown import AgentState, TaskState
from tinytown.services.town import Town

pytestmark = pytest.mark.usefixtures("fake_clis")


async def test_codex_not_logged_in_pauses_for_setup_instead_of_retrying(
    town: Town, start_runtime: StartRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CLI_NOT_LOGGED_IN", "1")
    await start_runtime()
    handle = await town.spawn_agent("cx", "codex")
    task_id = await handle.assign("nonetwork")

    async def paused() -> bool:
        return (await handle.state()).state is AgentState.PAUSED

    await eventually(paused, timeout=30)
    agent = await handle.state()
    assert agent.state_reason is not None and agent.state_reason.startswith("setup: ")
    assert "codex login status" in agent.state_reason
    task = await town.tasks.get(task_id)
    assert task.state is not TaskState.FAILED and task.attempts <= 1  # kept, not spent
    events = await town.messages.recent_events(50, agent=handle.id)
    assert any(e.kind == "setup" for e in events)


async def test_a_logged_in_codex_without_network_is_retried(
    town: Town, start_runtime: StartRuntime
) -> None:
    await start_runtime()
    handle = await town.spawn_agent("cx", "codex")
    task_id = await handle.assign("nonetwork")

    async def retried() -> bool:
        events = await town.messages.recent_events(50)
        return any(e.kind == "retry" and e.fields.get("task") == task_id for e in events)

    await eventually(retried, timeout=30)
    agent = await handle.state()
    assert agent.state is not AgentState.PAUSED  # a network problem, not its setup
    assert not (agent.state_reason or "").startswith("setup")
