"""Backlog dispatch by the supervisor: matching, exactly once, no polling."""

from __future__ import annotations

import re

import pytest

from tests.redis_commands import record_commands
from tests.runtime.conftest import eventually
from tinytown import TaskState
from tinytown.model import Agent, Ping, Task
from tinytown.runtime.context import Context
from tinytown.runtime.dispatch import Dispatcher, matches
from tinytown.runtime.idle_set import IdleSet, TrackedLifecycle
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town


def test_matching_rule() -> None:
    agent = Agent(id="a" * 8, name="ann", nickname="Ann", cli="x", role_id="backend")
    assert matches(Task.new("x"), agent)
    assert matches(Task.new("x", tags=["backend"]), agent)
    assert matches(Task.new("x", tags=["ann"]), agent)
    assert not matches(Task.new("x", tags=["frontend"]), agent)


async def test_tagged_backlog_is_done_exactly_once_by_matching_agents(
    town: Town, runtime: Runtime
) -> None:
    roles = {"b1": "backend", "b2": "backend", "b3": "backend", "f1": "frontend", "f2": "frontend"}
    for name, role in roles.items():
        await town.spawn_agent(name, role=role)
    tasks = []
    for i in range(20):
        tag = "backend" if i % 2 else "frontend"
        tasks.append(await town.backlog.add(f"print marker-{i}-end; sleep 0.05", tags=[tag]))

    async def all_done() -> bool:
        states = [(await town.tasks.get(t.id)).state for t in tasks]
        return all(s is TaskState.COMPLETED for s in states)

    await eventually(all_done, timeout=60)
    by_id = {a.id: a for a in await town.agents.list()}
    for task in tasks:
        done = await town.tasks.get(task.id)
        assert done.attempts == 1
        assert by_id[done.assigned_to or ""].role_id in done.tags
    logs = "".join((town.root / ".tt" / "logs" / f"{n}.log").read_text() for n in roles)
    for i in range(20):
        # the scripted agent prints each marker once per run of its task
        assert len(re.findall(rf"^marker-{i}-end$", logs, re.M)) == 1
    assert await town.backlog.list() == []
    # both roles worked
    workers = {by_id[(await town.tasks.get(t.id)).assigned_to or ""].name for t in tasks}
    assert workers & {"f1", "f2"} and workers & {"b1", "b2", "b3"}


async def test_unmatched_task_waits_in_the_backlog(town: Town, runtime: Runtime) -> None:
    handle = await town.spawn_agent("only", role="backend")
    await handle.wait(idle=True, timeout=20)
    task = await town.backlog.add("print nobody can", tags=["gpu"])
    matching = await town.backlog.add("print somebody can", tags=["backend"])
    await eventually(lambda: _done(town, matching.id), timeout=20)
    assert (await town.tasks.get(task.id)).state is TaskState.PENDING
    # a matching agent arriving later picks it up
    await town.spawn_agent("gpu-box", role="gpu")
    await eventually(lambda: _done(town, task.id), timeout=20)


async def _done(town: Town, task_id: str) -> bool:
    return (await town.tasks.get(task_id)).state is TaskState.COMPLETED


# -- a pass reads only what it hands out (the idle set lives in memory) ----------------


class _MemoryIdle:
    """The supervisor's side of the dispatcher, as the supervisor keeps it: an IdleSet."""

    def __init__(self, ids: list[str]) -> None:
        self.set = IdleSet()
        for n, agent_id in enumerate(ids):
            self.set.add(agent_id, float(n + 1))  # ids[0] idle the longest

    def idle_agents(self) -> list[tuple[str, float]]:
        return self.set.items()

    def is_idle(self, agent_id: str) -> bool:
        return agent_id in self.set

    def mark_busy(self, agent_id: str) -> None:
        self.set.discard(agent_id)


async def _idle_town(town: Town, n: int, roles: dict[int, str] | None = None) -> list[str]:
    """``n`` registered agents whose records say idle (no runtime: nothing else reads)."""
    ids = []
    for i in range(n):
        agent = await town.agents.spawn(f"w{i}", role=(roles or {}).get(i))
        await town.store.update(
            Agent,
            town.keys.agent(agent.id),
            lambda a: (a.transition("ready"), []),
            missing=lambda: AssertionError("spawned agent gone"),
        )
        ids.append(agent.id)
    return ids


def _record_commands(monkeypatch: pytest.MonkeyPatch, town: Town) -> list[list[str]]:
    return record_commands(monkeypatch, town.store)


def _touched(town: Town, ids: list[str], sent: list[list[str]]) -> set[str]:
    """Agents whose record or inbox any command named."""
    args = {a for command in sent for a in command}
    return {i for i in ids if town.keys.agent(i) in args or town.keys.inbox(i) in args}


async def test_a_pass_with_many_idle_agents_reads_only_what_it_hands_out(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _idle_town(town, 150)
    tasks = [await town.backlog.add(f"job {i}") for i in range(3)]
    idle = _MemoryIdle(ids)
    dispatcher = Dispatcher(Context(town), idle)
    sent = _record_commands(monkeypatch, town)
    assert await dispatcher.dispatch_once() == 3
    holders = [(await town.tasks.get(t.id)).assigned_to for t in tasks]
    assert holders == ids[:3]  # longest idle first, in backlog order
    assert _touched(town, ids, sent) == set(ids[:3])  # not one of the other 147
    assert [i for i, _ in idle.idle_agents()] == ids[3:]


async def test_a_long_backlog_is_read_only_as_far_as_idle_agents_go(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _idle_town(town, 2)
    tasks = [await town.backlog.add(f"job {i}") for i in range(40)]
    dispatcher = Dispatcher(Context(town), _MemoryIdle(ids))
    sent = _record_commands(monkeypatch, town)
    assert await dispatcher.dispatch_once() == 2
    args = {a for command in sent for a in command}
    read = [t.id for t in tasks if town.keys.task(t.id) in args]
    assert read == [t.id for t in tasks[:2]]  # the two handed out, not a page of 40


async def test_the_picked_agent_is_checked_in_redis_before_the_hand_over(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _idle_town(town, 40)
    # Memory says idle, Redis says otherwise: mail already waits for ids[0], and ids[1]
    # was paused. Neither may get the task; the next in line does.
    await town.messages.send(ids[0], Ping())
    await town.store.update(
        Agent,
        town.keys.agent(ids[1]),
        lambda a: (a.transition("interrupt"), []),
        missing=lambda: AssertionError("gone"),
    )
    task = await town.backlog.add("job")
    dispatcher = Dispatcher(Context(town), _MemoryIdle(ids))
    sent = _record_commands(monkeypatch, town)
    assert await dispatcher.dispatch_once() == 1
    assert (await town.tasks.get(task.id)).assigned_to == ids[2]
    assert _touched(town, ids, sent) <= set(ids[:3])  # read up to the first that was fit


async def test_a_tag_reads_each_idle_agent_at_most_once_per_pass(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _idle_town(town, 60, roles={45: "gpu"})
    gpu = await town.backlog.add("needs the gpu", tags=["gpu"])
    nobody = await town.backlog.add("needs a tpu", tags=["tpu"])
    plain = await town.backlog.add("anyone")
    dispatcher = Dispatcher(Context(town), _MemoryIdle(ids))
    sent = _record_commands(monkeypatch, town)
    assert await dispatcher.dispatch_once() == 2
    assert (await town.tasks.get(gpu.id)).assigned_to == ids[45]
    assert (await town.tasks.get(nobody.id)).state is TaskState.PENDING
    assert (await town.tasks.get(plain.id)).assigned_to == ids[0]
    # The candidates' reads (MGETs of agent records only; each hand-over's own atomic
    # check reads its task with its agent): every idle agent at most once in the pass.
    agent_keys = {town.keys.agent(i) for i in ids}
    reads = [
        key
        for command in sent
        if command[0] == "MGET" and set(command[1:]) <= agent_keys
        for key in command[1:]
    ]
    assert len(reads) == len(set(reads)) and set(reads) <= agent_keys


async def test_the_supervisors_idle_set_follows_the_lifecycle() -> None:
    idle = IdleSet()
    a, b = TrackedLifecycle("a", idle), TrackedLifecycle("b", idle)
    for life in (a, b):
        life.fire("ready")
    assert idle.items() == []  # ready is not yet waiting with nothing to do
    assert b.mark_idle() and a.mark_idle()
    assert [i for i, _ in idle.items()] == ["b", "a"]  # in the order they became idle
    b.mark_busy()
    assert "b" not in idle and len(idle) == 1
    b.mark_idle()
    assert [i for i, _ in idle.items()] == ["a", "b"]  # back of the line
    a.fire("interrupt")  # paused: no work
    assert [i for i, _ in idle.items()] == ["b"]
    a.fire("resume")
    assert "a" not in idle  # resumed, but idle only once its actor waits again
    b.fire("begin_round")
    assert idle.items() == []
    b.fire("end_round")
    assert b.mark_idle() and "b" in idle
    b.forget()  # supervision ended
    assert idle.items() == []
