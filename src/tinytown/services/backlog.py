"""The backlog: tasks waiting for an agent."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from tinytown.errors import InvalidTransitionError, NotFoundError
from tinytown.model import Task, TaskState
from tinytown.services.agents import AgentService
from tinytown.services.tasks import TaskService
from tinytown.store.records import Store


class BacklogService:
    def __init__(self, store: Store, agents: AgentService, tasks: TaskService) -> None:
        self.store = store
        self.agents = agents
        self.tasks = tasks
        self.keys = store.keys

    async def add(self, description: str, *, tags: Sequence[str] = ()) -> Task:
        return await self.tasks.create(description, tags=tags, backlog=True)

    async def list(self, start: int = 0, limit: int | None = None) -> builtins.list[Task]:
        """Backlog tasks in queue order (ids whose task is gone or finished are skipped);
        ``start``/``limit`` read one page of the queue."""
        stop = -1 if limit is None else start + limit - 1
        ids = await self.store.redis.execute("LRANGE", self.keys.backlog, start, stop)
        tasks = await self.store.mget(Task, [self.keys.task(i) for i in ids])
        return [t for t in tasks if t.state is TaskState.PENDING]

    async def claim(self, task_ref: str, agent_ref: str) -> Task:
        """Assign a backlog task to an agent. The agent is checked before anything changes."""
        agent = await self.agents.resolve(agent_ref)
        task = await self.tasks.resolve(task_ref)
        if task.state is not TaskState.PENDING:
            raise InvalidTransitionError(
                f"Task {task.short_id} is {task.state.value}, not waiting in the backlog."
            )
        return await self.tasks.assign_existing(task.id, agent.id)

    async def assign_all(self, agent_ref: str) -> builtins.list[Task]:
        agent = await self.agents.resolve(agent_ref)
        done = []
        for task in await self.list():
            try:
                done.append(await self.tasks.assign_existing(task.id, agent.id))
            except (InvalidTransitionError, NotFoundError):
                continue  # claimed by someone else meanwhile
        return done

    async def remove(self, task_ref: str) -> Task:
        """Take a task out of the backlog; it is cancelled, never deleted."""
        task = await self.tasks.resolve(task_ref)
        if task.state is not TaskState.PENDING:
            raise InvalidTransitionError(
                f"Task {task.short_id} is {task.state.value}, not waiting in the backlog."
            )
        return await self.tasks.finish(task.id, "cancel", "Removed from the backlog")
