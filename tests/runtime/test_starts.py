"""Actors starting together share their round trips (runtime/starts.py, batching.py), and
a reconcile request is consumed only once it had its effect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from tests.runtime.conftest import eventually
from tinytown.model import AgentState, TaskState
from tinytown.runtime.batching import Batcher
from tinytown.runtime.control_desk import ControlDesk
from tinytown.runtime.starts import Starts
from tinytown.runtime.town_runtime import Runtime
from tinytown.services import control
from tinytown.services.town import Town
from tinytown.store import indexes
from tinytown.store.resp import ResponseError


async def _all_idle(town: Town, ids: list[str]) -> bool:
    raws = await indexes.raw_records(town.store, [town.keys.agent(i) for i in ids])
    return all(r is not None and '"state":"idle"' in r for r in raws)


def _count_round_trips(monkeypatch: pytest.MonkeyPatch, town: Town) -> list[tuple[str, list[str]]]:
    """(kind, words) of every round trip the town's client makes from now on: a pipeline
    counts once, however many commands it holds."""
    trips: list[tuple[str, list[str]]] = []
    redis = town.store.redis
    execute, pipeline, run_script = redis.execute, redis.pipeline, redis.run_script

    async def counted_execute(*args: Any, **kw: Any) -> Any:
        trips.append(("command", [str(a) for a in args]))
        return await execute(*args, **kw)

    async def counted_pipeline(commands: Any, *a: Any, **kw: Any) -> Any:
        trips.append(("pipeline", [str(x) for c in commands for x in c]))
        return await pipeline(commands, *a, **kw)

    async def counted_script(script: Any, keys: Any, args: Any) -> Any:
        trips.append(("script", [*map(str, keys), *map(str, args)]))
        return await run_script(script, keys, args)

    monkeypatch.setattr(redis, "execute", counted_execute)
    monkeypatch.setattr(redis, "pipeline", counted_pipeline)
    monkeypatch.setattr(redis, "run_script", counted_script)
    return trips


@pytest.fixture
async def watcher(town: Town) -> AsyncIterator[Town]:
    """A second connection for the test's own polling (not counted with the town's)."""
    other = await Town.connect(town.root)
    try:
        yield other
    finally:
        await other.aclose()


async def _serve(town: Town, body: Callable[[Runtime], Awaitable[None]]) -> None:
    rt = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        await body(rt)
        nursery.cancel_scope.cancel()


# -- the batcher ---------------------------------------------------------------------


async def test_items_submitted_together_are_handled_in_one_batch() -> None:
    calls: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        calls.append(items)
        await trio.sleep(0)
        return [2 * i for i in items]

    batcher: Batcher[int, int] = Batcher(double, limit=3)
    results: dict[int, int] = {}

    async def one(i: int) -> None:
        results[i] = await batcher.submit(i)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        async with trio.open_nursery() as submitters:
            for i in range(7):
                submitters.start_soon(one, i)
        nursery.cancel_scope.cancel()
    assert results == {i: 2 * i for i in range(7)}
    assert [len(c) for c in calls] == [3, 3, 1]  # the limit, not one call per item


async def test_a_failed_batch_fails_each_of_its_submitters_and_the_loop_goes_on() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ResponseError("ERR max number of clients reached")
        return items

    batcher: Batcher[int, int] = Batcher(flaky, limit=10)
    errors: list[str] = []

    async def one(i: int) -> None:
        try:
            await batcher.submit(i)
        except ResponseError as exc:
            errors.append(str(exc))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        async with trio.open_nursery() as submitters:
            for i in range(2):
                submitters.start_soon(one, i)
        assert len(errors) == 2
        assert await batcher.submit(5) == 5  # the next batch is handled
        nursery.cancel_scope.cancel()


async def test_items_of_a_cancelled_loop_wait_for_the_next_one() -> None:
    started = trio.Event()

    async def slow(items: list[int]) -> list[int]:
        started.set()
        await trio.sleep_forever()
        return items

    batcher: Batcher[int, int] = Batcher(slow, limit=10)
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as first:
            nursery.start_soon(batcher.submit, 1)
            async with trio.open_nursery() as loop:
                loop.start_soon(batcher.run)
                await started.wait()
                first.cancel()
        assert len(batcher) == 1  # requeued, not lost
        nursery.cancel_scope.cancel()


# -- starting many actors ------------------------------------------------------------


async def test_actors_starting_together_share_their_round_trips(
    town: Town, watcher: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = await town.agents.spawn_many([f"b{i}" for i in range(60)])
    ids = [a.id for a in agents]
    trips = _count_round_trips(monkeypatch, town)

    async def body(rt: Runtime) -> None:
        await eventually(lambda: _all_idle(watcher, ids), timeout=30)

    await _serve(town, body)
    # No round trip is one agent's own (names a single agent): records read with the
    # others', the ready writes in batches, no first take (the inboxes were seen empty).
    own = [t for t in trips if sum(i in " ".join(t[1]) for i in ids) == 1]
    assert own == [], [(kind, words[:2]) for kind, words in own]
    # 60 agents took ~7 round trips each (420) before; now a handful of batches plus
    # the town's own loops.
    assert len(trips) < 60, [t[1][:2] for t in trips]


async def test_a_record_changed_under_the_ready_batch_is_not_overwritten(
    town: Town, watcher: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = await town.agents.spawn_many([f"c{i}" for i in range(5)])
    ids = [a.id for a in agents]
    real_write = Starts._write
    changed: list[str] = []

    async def racing(self: Starts, writes: list[Any]) -> int | None:
        if not changed:  # another writer changes one record before the batch's write
            key = writes[1][1]
            changed.append(key)
            raw = await town.store.redis.execute("GET", key)
            await town.store.redis.execute(
                "SET", key, raw.replace('"role_id":null', '"role_id":"x"')
            )
        return await real_write(self, writes)

    monkeypatch.setattr(Starts, "_write", racing)

    async def body(rt: Runtime) -> None:
        await eventually(lambda: _all_idle(watcher, ids), timeout=30)

    await _serve(town, body)
    agent = await town.agents.get(changed[0].rsplit(":", 1)[1])
    assert agent.state is AgentState.IDLE and agent.role_id == "x"  # its change stayed
    readies = [e for e in await town.messages.recent_events(200) if e.fields.get("verb") == "ready"]
    assert sorted(e.agent for e in readies) == sorted(ids)  # each recorded ready once


async def test_a_message_arriving_after_the_start_read_wakes_the_actor(
    town: Town, watcher: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start read saw an empty inbox, so the actor skips its first take; a task
    handed over right after that read must still be taken (the wake-up token was taken
    before the read)."""
    handle = await town.spawn_agent("late")
    real = indexes.start_snapshot
    task_ids: list[str] = []

    async def then_send(store: Any, agent_ids: Any) -> Any:
        snapshot = await real(store, agent_ids)
        if not task_ids:
            task_ids.append(await handle.assign("print late"))
        return snapshot

    monkeypatch.setattr(indexes, "start_snapshot", then_send)

    async def body(rt: Runtime) -> None:
        async def done() -> bool:
            task = await watcher.tasks.get(task_ids[0]) if task_ids else None
            return task is not None and task.state is TaskState.COMPLETED

        await eventually(done, timeout=30)

    await _serve(town, body)


# -- reconcile requests are not lost ---------------------------------------------------


async def test_agents_start_although_redis_refuses_the_start_reads_for_a_while(
    town: Town, watcher: Town, monkeypatch: pytest.MonkeyPatch, io_clock: trio.testing.MockClock
) -> None:
    """Many spawns at once, and Redis refuses the start path's reads for a while (e.g.
    'max number of clients reached'). A reconcile request used to read the record
    itself and, when that failed, was answered with an error and consumed: its agent
    stayed ``starting`` for ever. Now the request only starts the actor; the actor's
    failed read is a crash, restarted with backoff."""
    real = Starts._read_many
    failures = 0

    async def refusing(self: Starts, agent_ids: list[str]) -> list[Any]:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise ResponseError("ERR max number of clients reached")
        return await real(self, agent_ids)

    monkeypatch.setattr(Starts, "_read_many", refusing)

    async def body(rt: Runtime) -> None:
        agents = await town.agents.spawn_many([f"r{i}" for i in range(40)])
        agents += [await town.agents.spawn(f"one{i}") for i in range(3)]
        await eventually(lambda: _all_idle(watcher, [a.id for a in agents]), timeout=60)

    await _serve(town, body)
    assert failures == 2
    claimed = f"{town.keys.control}:claimed"
    lengths = await town.store.redis.pipeline([["LLEN", town.keys.control], ["LLEN", claimed]])
    assert lengths == [0, 0]


async def test_a_reconcile_request_for_no_agent_starts_nothing(
    town: Town, runtime: Runtime
) -> None:
    await control.notify(town.store, "reconcile", agent_id="00000000-0000-4000-8000-00000000dead")
    handle = await town.spawn_agent("after")  # requests are handled in order of arrival
    await handle.wait(idle=True, timeout=20)
    assert runtime.supervisor.live_count() == 1
    crashes = [e for e in await town.messages.recent_events(100) if e.kind == "crash"]
    assert crashes == []


async def test_reconcile_requests_are_performed_in_the_desks_loop(
    town: Town, watcher: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reconcile request only starts an actor: no task of its own, answered with the
    others of its claim in one write; other requests still go through ``handle``."""
    handled: list[str] = []
    real = ControlDesk.handle

    async def counted(self: ControlDesk, raw: str) -> None:
        handled.append(raw)
        await real(self, raw)

    monkeypatch.setattr(ControlDesk, "handle", counted)

    async def body(rt: Runtime) -> None:
        agents = await town.agents.spawn_many([f"q{i}" for i in range(30)])
        await eventually(lambda: _all_idle(watcher, [a.id for a in agents]), timeout=30)
        await (await town.agent("q0")).interrupt()  # a request that wants a reply

    await _serve(town, body)
    assert len(handled) == 1 and '"interrupt"' in handled[0]
    claimed = f"{town.keys.control}:claimed"
    assert await town.store.redis.execute("LLEN", claimed) == 0


async def test_one_bad_record_does_not_fail_the_batch_it_is_read_with(
    town: Town, watcher: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = await town.agents.spawn_many([f"g{i}" for i in range(6)])
    bad = agents[2]
    real = indexes.start_snapshot
    corrupted: list[str] = []

    async def corrupting(store: Any, agent_ids: Any) -> Any:
        records, inflight, queued = await real(store, agent_ids)
        if bad.id in agent_ids and not corrupted:  # read once as garbage
            corrupted.append(bad.id)
            records[list(agent_ids).index(bad.id)] = '{"id": 5}'
        return records, inflight, queued

    monkeypatch.setattr(indexes, "start_snapshot", corrupting)

    async def body(rt: Runtime) -> None:
        await eventually(lambda: _all_idle(watcher, [a.id for a in agents]), timeout=30)

    await _serve(town, body)
    crashes = [e.agent for e in await town.messages.recent_events(200) if e.kind == "crash"]
    assert crashes == [bad.id]  # only its actor crashed (and restarted), not the batch
