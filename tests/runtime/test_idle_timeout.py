"""``[agent] idle_timeout_secs`` (Rust Tinytown's spelling): an agent idle that long goes
cold; a round in progress is never cut short, and 0 (the default) means never."""

from __future__ import annotations

import json

import trio

from tests.runtime.conftest import eventually
from tinytown import AgentState, TaskState
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town


async def test_an_idle_agent_goes_cold_after_the_timeout(town: Town, runtime: Runtime) -> None:
    town.config.data["agent"] = {"idle_timeout_secs": 1}
    handle = await town.spawn_agent("ann")
    started = trio.current_time()
    # Work given at once is done first: the round (longer than the timeout) is not cut.
    task_id = await handle.assign("sleep 1.5; print done")
    agent = await handle.wait(timeout=30)  # until terminal
    assert agent.state is AgentState.COLD
    assert agent.state_reason == "idle for 1 s (agent.idle_timeout_secs)"
    assert trio.current_time() - started >= 2.5  # 1.5 s round, then 1 s idle
    done = await town.tasks.get(task_id)
    assert done.state is TaskState.COMPLETED and "done" in (done.result or "")
    events = await town.messages.recent_events(200, agent=handle.id)
    assert any(e.kind == "state" and "idle timeout" in e.text for e in events)
    # Cold, not gone: a restart brings it back.
    await handle.restart()
    assert (await handle.wait(idle=True, timeout=20)).state is AgentState.IDLE


async def test_zero_means_never(town: Town, runtime: Runtime) -> None:
    assert town.config.setting("agent.idle_timeout_secs") == 0
    handle = await town.spawn_agent("bob")
    await handle.wait(idle=True, timeout=20)
    with trio.move_on_after(1.5):
        await handle.wait(timeout=5)  # would return if it went cold
        raise AssertionError("the agent went cold with no idle timeout set")
    assert (await town.agents.resolve("bob")).state is AgentState.IDLE


async def test_idle_timeout_through_tt(town: Town, tt) -> None:  # type: ignore[no-untyped-def]
    set_it = tt("config", "agent.idle_timeout_secs", "1")
    assert set_it.returncode == 0 and set_it.stdout == "agent.idle_timeout_secs = 1\n"
    assert tt("run", "--detach").returncode == 0
    try:
        assert tt("spawn", "cat").returncode == 0
        waited = tt("wait", "cat", "--timeout", "30")  # returns once cold (terminal)
        assert waited.returncode == 0, waited.stderr
        agents = json.loads(tt("list", "--json").stdout)
        assert [(a["name"], a["state"]) for a in agents] == [("cat", "cold")]
        assert "idle_timeout_secs" in agents[0]["state_reason"]
    finally:
        tt("stop", "--now")
    await eventually(lambda: _released(town), timeout=20)


async def _released(town: Town) -> bool:
    return await town.runtime() is None
