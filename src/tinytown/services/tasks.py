"""Tasks: creating, assigning, listing and moving them through their states."""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tinytown.errors import AmbiguousReferenceError, InvalidTransitionError, NotFoundError
from tinytown.model import (
    Message,
    Task,
    TaskAssign,
    TaskDone,
    TaskFailed,
    TaskState,
    dumps,
)
from tinytown.model.ids import SUPERVISOR_ID, is_uuid, parse_time
from tinytown.store.records import Op, Store

if TYPE_CHECKING:
    from tinytown.services.agents import AgentService

MAX_DESCRIPTION = 16_000
MAX_RESULT = 16_000


def current_sender() -> str:
    """Who is acting: the agent whose round runs this process, else the supervisor."""
    agent_id = os.environ.get("TT_AGENT_ID", "")
    return agent_id if is_uuid(agent_id) else SUPERVISOR_ID


class TaskService:
    def __init__(self, store: Store, agents: AgentService) -> None:
        self.store = store
        self.agents = agents
        self.keys = store.keys

    # -- reading ---------------------------------------------------------------------

    async def list(
        self,
        *,
        state: TaskState | None = None,
        tag: str | None = None,
        agent: str | None = None,
    ) -> builtins.list[Task]:
        """Tasks in creation order, filtered by state, tag and agent id."""
        ids = await self.store.redis.execute("ZRANGE", self.keys.tasks, 0, -1)
        tasks = await self.store.mget(Task, [self.keys.task(i) for i in ids])
        return [
            t
            for t in tasks
            if (state is None or t.state is state)
            and (tag is None or tag in t.tags)
            and (agent is None or t.assigned_to == agent)
        ]

    async def get(self, task_id: str) -> Task:
        task = await self.store.get(Task, self.keys.task(task_id))
        if task is None:
            raise NotFoundError(f"No task with id {task_id}.")
        return task

    async def resolve(self, ref: str) -> Task:
        """A task by full id or unique id prefix (at least 4 characters)."""
        ref = ref.strip().lower()
        if is_uuid(ref):
            return await self.get(ref)
        if len(ref) < 4 or any(c not in "0123456789abcdef-" for c in ref):
            raise NotFoundError(f"{ref!r} is not a task id (give the id or 4+ of its first hex).")
        ids = await self.store.redis.execute("ZRANGE", self.keys.tasks, 0, -1)
        matches = [i for i in ids if i.startswith(ref)]
        if not matches:
            raise NotFoundError(f"No task with id starting {ref!r}.")
        if len(matches) > 1:
            raise AmbiguousReferenceError(
                f"Task reference {ref!r} is ambiguous: {', '.join(m[:8] for m in matches)}."
            )
        return await self.get(matches[0])

    async def current(self, agent_id: str) -> Task | None:
        """The agent's current task: its ``current_task``, else its one unfinished task."""
        agent = await self.agents.get(agent_id)
        if agent.current_task:
            task = await self.store.get(Task, self.keys.task(agent.current_task))
            if task and not task.state.terminal:
                return task
        open_tasks = [t for t in await self.list(agent=agent_id) if not t.state.terminal]
        running = [t for t in open_tasks if t.state is TaskState.RUNNING]
        pick = running or open_tasks
        return pick[0] if len(pick) == 1 else None

    # -- creating --------------------------------------------------------------------

    def _new(self, description: str, tags: Sequence[str], parent: str | None) -> Task:
        description = description.strip()
        if not description:
            raise InvalidTransitionError("A task needs a non-empty description.")
        if len(description) > MAX_DESCRIPTION:
            raise InvalidTransitionError(
                f"Task description is {len(description)} characters; the limit is"
                f" {MAX_DESCRIPTION}."
            )
        return Task.new(description, tags=[t.strip() for t in tags if t.strip()], parent_id=parent)

    def index_ops(self, task: Task) -> builtins.list[Op]:
        return [["ZADD", self.keys.tasks, str(parse_time(task.created_at).timestamp()), task.id]]

    async def create(
        self,
        description: str,
        *,
        tags: Sequence[str] = (),
        parent: str | None = None,
        backlog: bool = True,
    ) -> Task:
        """A new pending task, put in the backlog unless ``backlog`` is false."""
        parent_id = (await self.resolve(parent)).id if parent else None
        task = self._new(description, tags, parent_id)
        ops = self.index_ops(task)
        if backlog:
            ops.append(["RPUSH", self.keys.backlog, task.id])
            ops.append(["PUBLISH", self.keys.wake, "backlog"])
        ops.append(self.store.event_op("task", task=task.id, text=f"new task: {description[:120]}"))
        await self.store.apply(self.keys.task(task.id), expected=None, new=dumps(task), ops=ops)
        return task

    async def assign(
        self,
        agent_ref: str,
        description: str,
        *,
        tags: Sequence[str] = (),
        parent: str | None = None,
    ) -> Task:
        """Create a task assigned to the agent and send it ``task_assign``, atomically."""
        agent = await self.agents.resolve(agent_ref)
        parent_id = (await self.resolve(parent)).id if parent else None
        task = self._new(description, tags, parent_id)
        sender = current_sender()
        task = task.transition("assign", assigned_to=agent.id, assigned_by=sender)
        message = Message.new(sender, agent.id, TaskAssign(task.id))
        ops = [
            *self.index_ops(task),
            *self.store.deliver_ops(message, event=False),
            self.store.event_op(
                "assign", agent=agent.id, task=task.id, text=f"{agent.name} <- {description[:120]}"
            ),
        ]
        await self.store.apply(self.keys.task(task.id), expected=None, new=dumps(task), ops=ops)
        return task

    async def assign_existing(self, task_id: str, agent_id: str) -> Task:
        """Give a pending (backlog) task to an agent: state, backlog and message at once."""
        sender = current_sender()

        def change(task: Task) -> tuple[Task, builtins.list[Op]]:
            new = task.transition("assign", assigned_to=agent_id, assigned_by=sender)
            message = Message.new(sender, agent_id, TaskAssign(task.id))
            return new, [
                ["LREM", self.keys.backlog, "0", task.id],
                *self.store.deliver_ops(message, event=False),
                self.store.event_op(
                    "assign", agent=agent_id, task=task.id, text=f"assigned {task.short_id}"
                ),
            ]

        return await self._update(task_id, change)

    # -- state changes ---------------------------------------------------------------

    async def complete(self, ref: str, result: str = "Completed") -> Task:
        """Mark completed; the assigner gets ``task_done``."""
        task = await self.resolve(ref)
        return await self.finish(task.id, "complete", result)

    async def fail(self, ref: str, reason: str = "Failed") -> Task:
        """Mark failed; the assigner gets ``task_failed``."""
        task = await self.resolve(ref)
        return await self.finish(task.id, "fail", reason)

    async def cancel(self, ref: str, reason: str = "Cancelled") -> Task:
        task = await self.resolve(ref)
        return await self.finish(task.id, "cancel", reason)

    async def finish(self, task_id: str, verb: str, text: str, *, count: bool = True) -> Task:
        """Move a task to a terminal state, notify its assigner, and (``count``) add it to
        its agent's ``tasks_completed`` (the runtime counts in its own round update)."""
        text = text[-MAX_RESULT:]
        sender = current_sender()

        def change(task: Task) -> tuple[Task, builtins.list[Op]]:
            new = task.transition(verb, result=text)
            ops: builtins.list[Op] = [["LREM", self.keys.backlog, "0", task.id]]
            notify = task.assigned_by and task.assigned_by != task.assigned_to
            if notify and verb in ("complete", "fail"):
                body = TaskDone(task.id, text) if verb == "complete" else TaskFailed(task.id, text)
                ops += self.store.deliver_ops(
                    Message.new(task.assigned_to or sender, task.assigned_by or "", body),
                    event=False,
                )
            ops.append(
                self.store.event_op(
                    verb,
                    agent=task.assigned_to,
                    task=task.id,
                    state=new.state.value,
                    text=f"task {task.short_id} {new.state.value}: {text[:160]}",
                )
            )
            return new, ops

        task = await self._update(task_id, change)
        if count and task.state is TaskState.COMPLETED and task.assigned_to:
            await self._count_completion(task.assigned_to)
        return task

    async def start(self, task_id: str, agent_id: str) -> Task:
        def change(task: Task) -> tuple[Task, builtins.list[Op]]:
            if task.assigned_to != agent_id:
                raise InvalidTransitionError(f"Task {task.short_id} is not assigned to this agent.")
            new = task.transition("start")
            return new, [self.store.event_op("start", agent=agent_id, task=task.id)]

        return await self._update(task_id, change)

    async def requeue(self, task_id: str, *, why: str) -> Task:
        """Back to pending and to the backlog (its agent died or was killed)."""

        def change(task: Task) -> tuple[Task, builtins.list[Op]]:
            new = task.transition("requeue")
            return new, [
                ["LREM", self.keys.backlog, "0", task.id],
                ["RPUSH", self.keys.backlog, task.id],
                ["PUBLISH", self.keys.wake, "backlog"],
                self.store.event_op("requeue", task=task.id, text=f"{task.short_id}: {why}"),
            ]

        return await self._update(task_id, change)

    async def requeue_agent_tasks(self, agent_id: str) -> int:
        """Requeue every unfinished task assigned to ``agent_id``."""
        n = 0
        for task in await self.list(agent=agent_id):
            if task.state in (TaskState.ASSIGNED, TaskState.RUNNING):
                try:
                    await self.requeue(task.id, why="its agent stopped")
                    n += 1
                except InvalidTransitionError:
                    pass  # finished meanwhile
        return n

    async def _update(
        self, task_id: str, change: Callable[[Task], tuple[Task, builtins.list[Op]]]
    ) -> Task:
        return await self.store.update(
            Task,
            self.keys.task(task_id),
            change,
            missing=lambda: NotFoundError(f"No task with id {task_id}."),
        )

    async def _count_completion(self, agent_id: str) -> None:
        from tinytown.model import Agent

        def bump(agent: Agent) -> tuple[Agent, builtins.list[Op]]:
            import attrs

            return attrs.evolve(agent, tasks_completed=agent.tasks_completed + 1), []

        try:
            await self.store.update(
                Agent, self.keys.agent(agent_id), bump, missing=lambda: NotFoundError(agent_id)
            )
        except NotFoundError:
            pass  # the agent was pruned; the task keeps its record
