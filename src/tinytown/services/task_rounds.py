"""The task transitions an agent's rounds make: start (written, or staged to ride in the
round's first write of the agent record), the staged finish, and giving a task back
(retry, requeue) with what the round cost. A base class of TaskService (services/tasks.py).

Cancellation: every method is cancellable; each change is one atomic script (or staged:
nothing written), so a cancelled call has changed everything it was to change, or nothing.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable

import attrs

from tinytown.errors import InvalidTransitionError, NotFoundError
from tinytown.model import Task, TaskState, Usage, dumps, loads
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.text import check_text
from tinytown.store.keys import Keys
from tinytown.store.records import Conflict, Op, Staged, Store

MAX_RESULT = 16_000


class TaskRounds:
    """The round-facing transitions (see the module docstring)."""

    store: Store
    keys: Keys

    def _finished(
        self, task: Task, verb: str, text: str, sender: str, usage: Usage | None
    ) -> tuple[Task, builtins.list[Op]]:
        raise NotImplementedError

    async def start(self, task_id: str, agent_id: str) -> Task:
        """An assigned task begins running for ``agent_id`` (its attempt counted).
        Raises InvalidTransitionError (not assigned to it, finished), NotFoundError.
        Cancellable: once the write was sent, it may or may not have happened."""
        return await self._update(task_id, self._start_change(agent_id))

    async def stage_start(self, task_id: str, agent_id: str) -> Staged[Task]:
        """:meth:`start` computed, not written: it rides in the round's first write of
        the agent record (``Store.stage``). Same refusals. Cancellable."""
        return await self.store.stage(
            Task, self.keys.task(task_id), self._start_change(agent_id), missing=_no_task(task_id)
        )

    async def stage_finish(
        self, task_id: str, verb: str, text: str, usage: Usage | None = None
    ) -> Staged[Task]:
        """:meth:`finish` of a task by the runtime's round (``count=False``: the round's
        own write counts it), computed, not written: it rides in the round's settling
        write of the agent record. Same refusals. Cancellable."""
        text = check_text(text, "the result text")[-MAX_RESULT:]

        def change(task: Task) -> tuple[Task, builtins.list[Op]]:
            return self._finished(task, verb, text, SUPERVISOR_ID, usage)

        return await self.store.stage(
            Task, self.keys.task(task_id), change, missing=_no_task(task_id)
        )

    def _start_change(self, agent_id: str) -> Callable[[Task], tuple[Task, builtins.list[Op]]]:
        def change(task: Task) -> tuple[Task, builtins.list[Op]]:
            if task.assigned_to != agent_id:
                raise InvalidTransitionError(f"Task {task.short_id} is not assigned to this agent.")
            new = task.transition("start")
            return new, [self.store.event_op("start", agent=agent_id, task=task.id)]

        return change

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

    async def requeue_if_unchanged(self, task_raw: str, *, why: str) -> Task | None:
        """Requeue the task whose record is exactly ``task_raw`` (read as part of a
        consistent snapshot); None when it changed meanwhile (the caller decides again).
        ``attempts`` keeps counting: a running task was counted when it started."""
        task = loads(Task, task_raw)
        new = task.transition("requeue")
        try:
            await self.store.apply(
                self.keys.task(task.id),
                expected=task_raw,
                new=dumps(new),
                ops=[
                    ["LREM", self.keys.backlog, "0", task.id],
                    ["RPUSH", self.keys.backlog, task.id],
                    ["PUBLISH", self.keys.wake, "backlog"],
                    self.store.event_op("requeue", task=task.id, text=f"{task.short_id}: {why}"),
                ],
            )
        except Conflict:
            return None
        return new

    async def retry(self, task_id: str, agent_id: str) -> Task | None:
        """A ``running`` task of ``agent_id`` whose round died goes back to ``assigned``
        (to be run again); None when it is not that (finished, moved, gone)."""

        def change(task: Task) -> tuple[Task, builtins.list[Op]]:
            if task.assigned_to != agent_id or task.state is not TaskState.RUNNING:
                raise InvalidTransitionError(f"Task {task.short_id} is not running here.")
            return task.transition("retry"), [
                self.store.event_op("retry", agent=agent_id, task=task.id)
            ]

        try:
            return await self._update(task_id, change)
        except (InvalidTransitionError, NotFoundError):
            return None

    async def retry_later(
        self, task_id: str, agent_id: str, *, usage: Usage, counted: bool, why: str
    ) -> Task | None:
        """A ``running`` task of ``agent_id`` whose round did not finish it (rate limited,
        transient, a failure with attempts left, the agent's setup or budget) goes back
        to ``assigned``, ``usage`` added, to be started again by the agent. ``counted``
        false takes back the attempt its start counted (the task was not at fault).
        None when the task is not running here (the CLI finished it itself, or it moved):
        then only the usage is added."""

        def change(task: Task) -> tuple[Task, builtins.list[Op]]:
            if task.assigned_to != agent_id or task.state is not TaskState.RUNNING:
                raise InvalidTransitionError(f"Task {task.short_id} is not running here.")
            attempts = task.attempts if counted else max(0, task.attempts - 1)
            new = task.transition("retry", usage=task.usage + usage, attempts=attempts)
            event = self.store.event_op(
                "retry", agent=agent_id, task=task.id, text=f"{task.short_id}: {why}"[:300]
            )
            return new, [event]

        try:
            return await self._update(task_id, change)
        except InvalidTransitionError:
            await self.add_usage(task_id, usage)
            return None
        except NotFoundError:
            return None

    async def add_usage(self, task_id: str, usage: Usage) -> None:
        """Add what a round cost to the task's usage, whatever its state (a task the CLI
        finished itself during the round). A task gone meanwhile is left alone."""
        if usage.empty:
            return

        def change(task: Task) -> tuple[Task, builtins.list[Op]]:
            return attrs.evolve(task, usage=task.usage + usage), []

        try:
            await self._update(task_id, change)
        except NotFoundError:
            pass

    async def _update(
        self, task_id: str, change: Callable[[Task], tuple[Task, builtins.list[Op]]]
    ) -> Task:
        return await self.store.update(
            Task, self.keys.task(task_id), change, missing=_no_task(task_id)
        )


def _no_task(task_id: str) -> Callable[[], Exception]:
    return lambda: NotFoundError(f"No task with id {task_id}.")
