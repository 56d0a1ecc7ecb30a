"""Backlog dispatch by the supervisor: matching, exactly once, no polling."""

from __future__ import annotations

import re

from tests.runtime.conftest import eventually
from tinytown import TaskState
from tinytown.model import Agent, Task
from tinytown.runtime.dispatch import matches
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
