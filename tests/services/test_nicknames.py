"""Nicknames are unique within a town (services/agents.py), also under concurrent spawns."""

from __future__ import annotations

import pytest
import trio

import tinytown.services.agents as agents_module
from tinytown.errors import AlreadyExistsError
from tinytown.model import Agent, dumps, new_id
from tinytown.model.nicknames import NICKNAMES
from tinytown.services.town import Town
from tinytown.store.records import Store


async def test_sixty_agents_have_sixty_nicknames(town: Town) -> None:
    async with trio.open_nursery() as nursery:  # concurrent spawns race for names
        for i in range(60):
            nursery.start_soon(town.agents.spawn, f"w{i}")
    agents = await town.agents.list()
    nicknames = [a.nickname.lower() for a in agents]
    assert len(agents) == 60
    assert len(set(nicknames)) == 60


async def test_taken_nickname_moves_to_the_next_free_one(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = iter(["00000005-0000-4000-8000-00000000000a", "00000005-0000-4000-8000-00000000000b"])
    monkeypatch.setattr(agents_module, "new_id", lambda: next(ids))
    first = await town.agents.spawn("one")
    second = await town.agents.spawn("two")
    assert (first.nickname, second.nickname) == (NICKNAMES[5], NICKNAMES[6])
    assert (await town.agents.resolve(NICKNAMES[6])).id == second.id


async def test_explicit_nickname_taken_is_refused(town: Town) -> None:
    await town.agents.spawn("one", nickname="Zed")
    try:
        await town.agents.spawn("two", nickname="zed")
    except AlreadyExistsError as exc:
        assert "nickname 'zed' is taken by agent one" in str(exc)
    else:
        raise AssertionError("a taken nickname was accepted")
    assert [a.name for a in await town.agents.list()] == ["one"]


async def test_a_pruned_agents_nickname_is_free_again(town: Town) -> None:
    await town.agents.spawn("one", nickname="Zed")
    store: Store = town.store
    # Delete the record the way prune does (the index entry lingers).
    await store.run_ops(
        [
            ["DEL", store.keys.agent((await town.agents.resolve("one")).id)],
            ["HDEL", store.keys.agents, "one"],
        ]
    )
    again = await town.agents.spawn("two", nickname="Zed")
    assert again.nickname == "Zed"


async def test_agents_recorded_before_the_index_count(town: Town) -> None:
    # An agent written without a nickname index entry (an older town, a migration).
    store: Store = town.store
    old = Agent(id=new_id(), name="old", nickname="Ruth", cli="scripted")
    await store.run_ops(
        [
            ["SET", store.keys.agent(old.id), dumps(old)],
            ["HSET", store.keys.agents, "old", old.id],
        ]
    )
    try:
        await town.agents.spawn("new", nickname="ruth")
    except AlreadyExistsError:
        pass
    else:
        raise AssertionError("an unindexed agent's nickname was given twice")
    new = await town.agents.spawn("new")
    assert new.nickname != "Ruth"
    again = await town.agents.spawn("newer", nickname="Ruth2")
    assert again.nickname == "Ruth2"


async def test_past_the_names_tried_the_own_name_is_numbered(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Agents whose own name is the same: the first ones get the following names of the
    list, then the own name is numbered (Ruth2, Ruth3...) from a counter, so a spawn never
    scans a big town's index."""
    scan = agents_module.NICKNAME_SCAN
    ids = iter(f"00000005-0000-4000-8000-{i:012x}" for i in range(scan + 2))
    monkeypatch.setattr(agents_module, "new_id", lambda: next(ids))
    spawned = [await town.agents.spawn(f"w{i}") for i in range(scan + 2)]
    names = [a.nickname for a in spawned]
    assert names[:scan] == [NICKNAMES[(5 + i) % len(NICKNAMES)] for i in range(scan)]
    assert names[scan:] == [f"{NICKNAMES[5]}2", f"{NICKNAMES[5]}3"]
    assert len({n.lower() for n in names}) == len(names)
