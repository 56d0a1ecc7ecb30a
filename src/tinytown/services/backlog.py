"""The backlog: tasks waiting for an agent."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from tinytown.errors import InvalidTransitionError, NotFoundError
from tinytown.model import Task, TaskState
from tinytown.model.ids import SUPERVISOR_ID, is_uuid
from tinytown.services.agents import AgentService
from tinytown.services.tasks import TaskService, refuse_not_pending, refuse_terminal
from tinytown.store import indexes
from tinytown.store.records import Store


class BacklogService:
    def __init__(self, store: Store, agents: AgentService, tasks: TaskService) -> None:
        self.store = store
        self.agents = agents
        self.tasks = tasks
        self.keys = store.keys

    async def add(
        self, description: str, *, tags: Sequence[str] = (), max_attempts: int | None = None
    ) -> Task:
        return await self.tasks.create(
            description, tags=tags, backlog=True, max_attempts=max_attempts
        )

    async def list(self, start: int = 0, limit: int | None = None) -> builtins.list[Task]:
        """Backlog tasks in queue order (ids whose task is gone or finished are skipped);
        ``start``/``limit`` read one page of the queue."""
        stop = -1 if limit is None else start + limit - 1
        ids = await indexes.backlog_ids(self.store, start, stop)
        tasks = await self.store.mget(Task, [self.keys.task(i) for i in ids])
        return [t for t in tasks if t.state is TaskState.PENDING]

    async def claim(self, task_ref: str, agent_ref: str, *, sender: str = SUPERVISOR_ID) -> Task:
        """Assign a backlog task to an agent (``sender`` assigns it). Refused unless the
        task still waits in the backlog and the agent is live, both checked in the same
        atomic step as the assignment (two claimers: one wins, the other is refused).
        Two round trips when ``agent_ref`` is an agent id (a name costs one more).
        Cancellable like :meth:`TaskService.assign_existing`."""
        agent_id = (
            agent_ref.strip().lower()
            if is_uuid(agent_ref.strip().lower())
            else (await self.agents.resolve(agent_ref)).id
        )
        return await self.tasks.assign_existing(
            task_ref, agent_id, sender=sender, backlog_only=True
        )

    async def assign_all(
        self, agent_ref: str, *, sender: str = SUPERVISOR_ID
    ) -> builtins.list[Task]:
        """Assign every backlog task to one agent (refused if it is cold, stopped or error)."""
        agent = await self.agents.resolve(agent_ref)
        refuse_terminal(agent)
        done = []
        for task in await self.list():
            try:
                done.append(await self.tasks.assign_existing(task.id, agent.id, sender=sender))
            except (InvalidTransitionError, NotFoundError):
                continue  # claimed by someone else meanwhile
        return done

    async def remove(self, task_ref: str) -> Task:
        """Take a task out of the backlog; it is cancelled, never deleted."""
        task = await self.tasks.resolve(task_ref)
        refuse_not_pending(task)
        return await self.tasks.finish(task.id, "cancel", "Removed from the backlog")
