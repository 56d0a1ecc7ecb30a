"""Stuck work is found: tasks assigned or running to an agent that will not do them are
requeued by ``recover``; assigning to a cold, stopped or error agent is refused atomically."""

from __future__ import annotations

import json

import pytest
import trio

from tinytown import AgentState, TaskState
from tinytown.errors import InvalidTransitionError, NotFoundError
from tinytown.model import Task, now
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.recovery import RecoverReport
from tinytown.services.town import Town
from tinytown.store.records import Store


async def hold_lease(town: Town) -> None:
    """A runtime lease held by a process on another host: the town counts as running, so
    agents with a fresh heartbeat are live (not orphans)."""
    lease = {"id": "test", "host": "elsewhere.invalid", "pid": 1, "started": now()}
    await town.redis.execute("SET", town.keys.runtime, json.dumps(lease), "PX", 60_000)


async def take_and_start(town: Town, agent_id: str, task_id: str) -> None:
    """What an actor does at the start of a round: the assignment goes in flight, the task
    starts (running, attempts 1)."""
    await town.redis.execute(
        "LMOVE", town.keys.inbox(agent_id), town.keys.inflight(agent_id), "LEFT", "RIGHT"
    )
    await town.tasks.start(task_id, agent_id)


async def drop_inflight(town: Town, agent_id: str) -> None:
    """The round's message vanished (e.g. acknowledged by a round that then lost the task)."""
    await town.redis.execute("DEL", town.keys.inflight(agent_id))


async def in_backlog(town: Town, task_id: str) -> bool:
    return task_id in await town.redis.execute("LRANGE", town.keys.backlog, 0, -1)


# -- recover ---------------------------------------------------------------------------


async def test_running_task_of_an_agent_not_working_on_it_is_requeued(town: Town) -> None:
    await hold_lease(town)
    worker = await town.spawn_agent("worker")
    task = await town.tasks.assign("worker", "print stuck")
    await take_and_start(town, worker.id, task.id)
    await drop_inflight(town, worker.id)

    dry = await town.recovery.recover(dry_run=True)
    assert dry.agents == []  # the agent itself is live
    assert [(t.task.id, t.why) for t in dry.tasks] == [(task.id, "worker is not working on it")]
    assert (await town.tasks.get(task.id)).state is TaskState.RUNNING  # dry run: unchanged

    report = await town.recovery.recover()
    assert [t.task.id for t in report.tasks] == [task.id]
    after = await town.tasks.get(task.id)
    assert (after.state, after.assigned_to, after.attempts) == (TaskState.PENDING, None, 1)
    assert await in_backlog(town, task.id)
    assert (await worker.state()).state is AgentState.STARTING  # the agent is left alone
    assert (await town.recovery.recover()).tasks == []  # idempotent


async def test_assigned_task_whose_assignment_is_lost_is_requeued(town: Town) -> None:
    await hold_lease(town)
    worker = await town.spawn_agent("worker")
    task = await town.tasks.assign("worker", "print lost")
    await town.redis.execute("DEL", town.keys.inbox(worker.id))
    report = await town.recovery.recover()
    assert [(t.task.id, t.why) for t in report.tasks] == [
        (task.id, "worker is not holding its assignment")
    ]
    assert (await town.tasks.get(task.id)).state is TaskState.PENDING


async def test_work_an_agent_holds_or_does_is_never_requeued(town: Town) -> None:
    await hold_lease(town)
    await town.spawn_agent("a")
    b = await town.spawn_agent("b")
    c = await town.spawn_agent("c")
    queued = await town.tasks.assign("a", "print queued")  # task_assign in a's inbox
    taken = await town.tasks.assign("b", "print taken")
    await take_and_start(town, b.id, taken.id)  # running, its message in flight
    current = await town.tasks.assign("c", "print current")
    await take_and_start(town, c.id, current.id)
    await drop_inflight(town, c.id)
    await town.store.update(  # ... but c says it works on it
        type(await c.state()),
        town.keys.agent(c.id),
        lambda ag: (ag.transition("work", current_task=current.id), []),
        missing=lambda: NotFoundError("c"),
    )
    assert (await town.recovery.recover()).tasks == []
    states = [(await town.tasks.get(t.id)).state for t in (queued, taken, current)]
    assert states == [TaskState.ASSIGNED, TaskState.RUNNING, TaskState.RUNNING]


async def test_tasks_of_terminal_and_missing_agents_are_requeued(town: Town) -> None:
    await hold_lease(town)
    cold = await town.spawn_agent("cold")
    await town.spawn_agent("gone")
    on_cold = await town.tasks.assign("cold", "print cold")
    on_gone = await town.tasks.assign("gone", "print gone")
    await town.agents.record_offline(cold.id, "close")  # cold; its task_assign stays queued
    gone_id = (await town.agents.resolve("gone")).id
    await town.redis.execute("DEL", town.keys.agent(gone_id))
    report = await town.recovery.recover()
    assert {(t.task.id, t.why) for t in report.tasks} == {
        (on_cold.id, "its agent cold is cold"),
        (on_gone.id, "its agent no longer exists"),
    }
    for task in (on_cold, on_gone):
        assert (await town.tasks.get(task.id)).state is TaskState.PENDING


async def test_without_a_runtime_dry_run_lists_the_tasks_of_agents_it_would_stop(
    town: Town,
) -> None:
    await town.spawn_agent("w")
    task = await town.tasks.assign("w", "print x")
    dry = await town.recovery.recover(dry_run=True)
    assert [o.agent.name for o in dry.agents] == ["w"]
    assert [(t.task.id, t.why) for t in dry.tasks] == [(task.id, "its agent w is stopped")]
    assert (await town.tasks.get(task.id)).state is TaskState.ASSIGNED
    report = await town.recovery.recover()
    assert [t.task.id for t in report.tasks] == [task.id]
    assert (await town.tasks.get(task.id)).state is TaskState.PENDING


async def test_a_task_that_moves_on_after_it_was_judged_is_not_requeued(town: Town) -> None:
    await hold_lease(town)
    worker = await town.spawn_agent("worker")
    task = await town.tasks.assign("worker", "print racing")
    await take_and_start(town, worker.id, task.id)
    await drop_inflight(town, worker.id)
    (stuck,) = await town.recovery.stuck_tasks()
    await town.tasks.complete(task.id, "done after all")  # between judging and requeueing
    assert await town.tasks.requeue_if_unchanged(stuck.raw, why="test") is None
    assert (await town.tasks.get(task.id)).state is TaskState.COMPLETED
    assert not await in_backlog(town, task.id)


# -- assigning to an agent that takes no work ------------------------------------------


@pytest.mark.parametrize("verb", ["kill", "close"])
async def test_assign_to_a_terminal_agent_is_refused(town: Town, verb: str) -> None:
    dead = await town.spawn_agent("dead")
    await town.lifecycle.apply_offline(dead.id, verb)
    state = (await dead.state()).state.value
    with pytest.raises(InvalidTransitionError) as info:
        await town.tasks.assign("dead", "print never")
    assert str(info.value).startswith(f"Agent dead is {state} and takes no work;")
    assert await town.tasks.list() == []  # nothing created
    assert await dead.inbox_len() == 0
    with pytest.raises(InvalidTransitionError):
        await dead.assign("print never")  # the handle too


async def test_assign_anyone_puts_the_task_in_the_backlog(town: Town) -> None:
    dead = await town.spawn_agent("dead")
    await town.lifecycle.apply_offline(dead.id, "kill")
    task = await town.tasks.assign("dead", "print later", anyone=True, tags=["x"])
    assert (task.state, task.assigned_to, task.tags) == (TaskState.PENDING, None, ("x",))
    assert await in_backlog(town, task.id)
    assert await dead.inbox_len() == 0
    live = await town.spawn_agent("live")
    task = await town.tasks.assign("live", "print now", anyone=True)  # a live agent gets it
    assert (task.state, task.assigned_to) == (TaskState.ASSIGNED, live.id)


async def test_assign_existing_refuses_terminal_and_missing_agents(town: Town) -> None:
    error = await town.spawn_agent("broken")
    await town.agents.mark(error.id, "error", reason="test", event_verb="error")
    task = await town.backlog.add("print me")
    with pytest.raises(InvalidTransitionError, match="is error and takes no work"):
        await town.tasks.assign_existing(task.id, error.id)
    with pytest.raises(NotFoundError):
        await town.tasks.assign_existing(task.id, "0" * 8 + "-0000-4000-8000-" + "0" * 12)
    with pytest.raises(InvalidTransitionError):
        await town.backlog.claim(task.id[:8], "broken")
    with pytest.raises(InvalidTransitionError):
        await town.backlog.assign_all("broken")
    after = await town.tasks.get(task.id)
    assert (after.state, after.assigned_to) == (TaskState.PENDING, None)
    assert await in_backlog(town, task.id)


async def test_the_liveness_guard_is_checked_in_the_atomic_write(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent is killed after assign_existing read it and before it writes: the write
    is refused by its guard, and the retry sees the stopped agent."""
    agent = await town.spawn_agent("victim")
    task = await town.backlog.add("print racing")
    real_apply = Store.apply
    killed = False

    async def apply_after_a_kill(self: Store, key: str, **kw: object) -> None:
        nonlocal killed
        if key == town.keys.task(task.id) and not killed:
            killed = True
            await town.agents.record_offline(agent.id, "kill")  # the race, injected
        await real_apply(self, key, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "apply", apply_after_a_kill)
    with pytest.raises(InvalidTransitionError, match="victim is stopped"):
        await town.tasks.assign_existing(task.id, agent.id)
    assert killed
    after = await town.tasks.get(task.id)
    assert (after.state, after.assigned_to) == (TaskState.PENDING, None)
    assert await agent.inbox_len() == 0  # no task_assign delivered


async def test_new_task_assign_is_guarded_the_same_way(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await town.spawn_agent("victim")
    real_apply = Store.apply
    calls = 0

    async def apply_after_a_kill(self: Store, key: str, **kw: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await town.agents.record_offline(agent.id, "close")
        await real_apply(self, key, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Store, "apply", apply_after_a_kill)
    with pytest.raises(InvalidTransitionError, match="victim is cold"):
        await town.tasks.assign("victim", "print racing")
    assert await town.tasks.list() == []
    assert await agent.inbox_len() == 0
    _ = Task




async def test_a_running_towns_work_is_never_taken_for_stuck(town: Town, runtime: Runtime) -> None:
    """With a real runtime and a scripted agent: at every stage of a task (queued, taken,
    running, finished) recover finds nothing to requeue, and the task completes."""
    agent = await town.spawn_agent("w")
    await town.agents.wait("w", idle=True, timeout=20)
    task = await town.tasks.assign("w", "sleep 0.5; print done")
    stages = set()
    while True:
        current = await town.tasks.get(task.id)
        stages.add(current.state)
        report = await town.recovery.recover()
        assert report == RecoverReport([], []), report
        if current.state.terminal:
            break
        await trio.sleep(0.05)  # sample the stages; each sample is a full check
    assert current.state is TaskState.COMPLETED and TaskState.RUNNING in stages
    assert (await agent.state()).state is not AgentState.STOPPED
