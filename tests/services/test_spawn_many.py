"""AgentService.spawn_many: one atomic write for a batch, uniqueness as atomic as spawn's."""

from __future__ import annotations

from typing import Any

import pytest

from tests.redis_commands import record_commands
from tests.runtime.conftest import eventually
from tinytown.errors import AlreadyExistsError, InvalidInputError, InvalidNameError
from tinytown.model import AgentState
from tinytown.runtime.town_runtime import Runtime
from tinytown.services import control, spawn_batch
from tinytown.services.town import Town


async def test_a_batch_registers_every_agent_with_distinct_nicknames(town: Town) -> None:
    await town.agents.spawn("solo")
    names = [f"w{i}" for i in range(120)]  # more than the list of names: numbered ones too
    agents = await town.agents.spawn_many(names, role="worker")
    assert [a.name for a in agents] == names
    listed = {a.name: a for a in await town.agents.list()}
    assert set(listed) == {"solo", *names}
    assert all(listed[n].state is AgentState.STARTING for n in names)
    assert all(listed[n].role_id == "worker" for n in names)
    nicknames = [a.nickname.lower() for a in listed.values()]
    assert len(set(nicknames)) == len(nicknames)
    for agent in agents[:3]:  # the indexes resolve them like any spawned agent
        assert (await town.agents.resolve(agent.name)).id == agent.id
        assert (await town.agents.resolve(agent.nickname)).id == agent.id
    spawned = [e for e in await town.messages.recent_events(500) if e.kind == "spawn"]
    assert len(spawned) == 121


@pytest.mark.parametrize(
    ("names", "error"),
    [
        (["a1", "taken", "a2"], AlreadyExistsError),
        (["a1", "a2", "a1"], InvalidInputError),
        (["a1", "not a name!"], InvalidNameError),
    ],
)
async def test_a_refused_batch_writes_nothing(
    town: Town, names: list[str], error: type[Exception]
) -> None:
    await town.agents.spawn("taken")
    with pytest.raises(error):
        await town.agents.spawn_many(names)
    assert [a.name for a in await town.agents.list()] == ["taken"]


async def test_a_nickname_taken_between_pick_and_write_is_picked_again(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = spawn_batch._pick_nicknames
    calls = 0

    async def racing(store: Any, agent_ids: list[str]) -> list[tuple[str, str | None]]:
        nonlocal calls
        calls += 1
        picked = await real(store, agent_ids)
        if calls == 1:  # another spawn takes the batch's second nickname right now
            await town.agents.spawn("intruder", nickname=picked[1][0])
        return picked

    monkeypatch.setattr(spawn_batch, "_pick_nicknames", racing)
    agents = await town.agents.spawn_many(["b0", "b1", "b2"])
    assert calls == 2  # the guard refused the first write; the batch picked again
    everyone = await town.agents.list()
    nicknames = [a.nickname.lower() for a in everyone]
    assert len(everyone) == 4 and len(set(nicknames)) == 4
    assert {a.id for a in agents} <= {a.id for a in everyone}


async def test_a_name_taken_between_pick_and_write_refuses_the_whole_batch(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = spawn_batch._pick_nicknames

    async def racing(store: Any, agent_ids: list[str]) -> list[tuple[str, str | None]]:
        picked = await real(store, agent_ids)
        await town.agents.spawn("c1")  # a concurrent spawn of the same name
        return picked

    monkeypatch.setattr(spawn_batch, "_pick_nicknames", racing)
    with pytest.raises(AlreadyExistsError, match="'c1'"):
        await town.agents.spawn_many(["c0", "c1", "c2"])
    assert [a.name for a in await town.agents.list()] == ["c1"]


async def test_a_running_town_starts_the_whole_batch(town: Town, runtime: Runtime) -> None:
    agents = await town.agents.spawn_many([f"r{i}" for i in range(25)])

    async def all_idle() -> bool:
        states = {a.id: a.state for a in await town.agents.list()}
        return all(states[a.id] is AgentState.IDLE for a in agents)

    await eventually(all_idle, timeout=30)


async def test_notify_ops_fit_any_batch_in_one_atomic_step(town: Town) -> None:
    # Lua's unpack() takes ~8,000 values per command: one RPUSH of 9,000 would fail.
    each = [{"agent_id": f"{i:08d}-0000-4000-8000-000000000000"} for i in range(9000)]
    ops = control.notify_ops(town.store, "reconcile", each)
    await town.store.apply(town.keys.meta, ops=ops)
    assert await town.store.redis.execute("LLEN", town.keys.control) == 9000


async def test_nicknames_are_picked_in_one_script_per_chunk_and_stay_distinct(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spawn_batch, "PICK_CHUNK", 25)
    for i in range(5):  # names the batch's candidate lists run into
        await town.agents.spawn(f"solo{i}")
    await town.agents.spawn_many([f"a{i}" for i in range(400)])  # the list runs out: numbered
    sent = record_commands(monkeypatch, town.store)
    await town.agents.spawn_many([f"b{i}" for i in range(120)])
    picks = [c for c in sent if c[0] == "SCRIPT" and c[1] == town.keys.nicknames]
    assert len(picks) == 5  # 120 agents in chunks of 25: one round trip per chunk
    nicknames = [a.nickname.lower() for a in await town.agents.list()]
    assert len(nicknames) == 525
    assert len(set(nicknames)) == len(nicknames)
