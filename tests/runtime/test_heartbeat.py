"""The heartbeat: one HSET per beat into the heartbeat hash, the agent records rewritten
only every RECORD_BEATS-th beat; recovery reads the fresher of the two."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import trio
import trio.testing

from tests.redis_commands import record_commands
from tests.runtime.conftest import eventually
from tinytown.model import now
from tinytown.model.ids import format_time
from tinytown.runtime import supervisor
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.recovery import STALE_AFTER
from tinytown.services.town import Town
from tinytown.store import indexes


def _long_ago() -> str:
    return format_time(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10 * STALE_AFTER))


async def test_beats_write_the_hash_and_the_records_only_now_and_then(
    town: Town, monkeypatch: pytest.MonkeyPatch, io_clock: trio.testing.MockClock
) -> None:
    agents = await town.agents.spawn_many([f"h{i}" for i in range(5)])
    ids = [a.id for a in agents]
    ghost = "00000000-0000-4000-8000-000000000000"  # an entry no live agent has
    await town.store.redis.execute("HSET", indexes.heartbeats_key(town.store), ghost, "x")
    monkeypatch.setattr(supervisor, "RECORD_BEATS", 4)
    sent = record_commands(monkeypatch, town.store)
    interval = town.config.setting("runtime.heartbeat_interval")
    rt = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)

        async def all_beating() -> bool:
            return set(await indexes.heartbeats(town.store, [*ids, ghost])) == set(ids)

        def beats() -> list[list[str]]:
            return [c for c in sent if c[:2] == ["HSET", indexes.heartbeats_key(town.store)]]

        await eventually(all_beating)
        # Counted from here, not from the first beat: the poll may see that beat a little
        # late (io_clock jumps while Redis answers), so 9.5 intervals hold 9 or 10 beats.
        seen = len(beats())
        await trio.sleep(interval * 9.5)
        nursery.cancel_scope.cancel()
    hset = beats()
    keys = {town.keys.agent(i) for i in ids}
    records = [c for c in sent if c[0] == "SCRIPT" and set(c[1:-1]) == keys]
    assert seen >= 1 and len(hset) - seen in (9, 10)  # one beat per interval, no more
    # one beat in four rewrites the records (the first beats may come before the actors)
    assert 2 <= len(records) <= 3
    assert all(set(c[2::2]) == set(ids) for c in hset)  # every live agent, each beat


async def test_recovery_takes_the_fresher_of_record_and_hash(town: Town) -> None:
    fresh, stale, silent = await town.agents.spawn_many(["fresh", "stale", "silent"])
    for agent in (fresh, stale, silent):  # every record says its last beat was long ago
        key = town.keys.agent(agent.id)
        raw = await town.store.redis.execute("GET", key)
        await town.store.redis.execute("SET", key, raw.replace(agent.last_heartbeat, _long_ago()))
    # a town runs (a lease held elsewhere: nothing here beats) and only the hash is fresh
    lease = {"id": "x", "host": "elsewhere", "pid": 1, "started": "t", "boot": ""}
    await town.store.redis.execute("SET", town.keys.runtime, json.dumps(lease))
    key = indexes.heartbeats_key(town.store)
    await town.store.redis.execute("HSET", key, fresh.id, now(), stale.id, _long_ago())
    orphans = await town.recovery.orphans()
    assert sorted(o.agent.name for o in orphans) == ["silent", "stale"]
    ages = {o.agent.name: o.heartbeat_age for o in orphans}
    assert all(age is not None and age > STALE_AFTER for age in ages.values())
