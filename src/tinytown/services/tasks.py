"""Tasks: creating, assigning, listing and moving them through their states."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

import attrs

from tinytown.errors import (
    AmbiguousReferenceError,
    InvalidInputError,
    InvalidTransitionError,
    MalformedRecordError,
    NotFoundError,
    TinytownError,
)
from tinytown.model import (
    Agent,
    Message,
    Task,
    TaskAssign,
    TaskDone,
    TaskFailed,
    TaskState,
    Usage,
    dumps,
    loads,
)
from tinytown.model.ids import SUPERVISOR_ID, is_uuid, parse_time
from tinytown.services import legacy
from tinytown.services.agents import AgentService
from tinytown.services.task_rounds import MAX_RESULT, TaskRounds
from tinytown.services.text import check_text
from tinytown.store import indexes, lookups
from tinytown.store.records import Conflict, GuardFailed, Op, Store

MAX_DESCRIPTION = 16_000


def refuse_terminal(agent: Agent) -> None:
    """Raise InvalidTransitionError if ``agent`` is cold, stopped or error: it takes no work
    (a task assigned to it would wait forever)."""
    if agent.state.terminal:
        raise InvalidTransitionError(
            f"Agent {agent.name} is {agent.state.value} and takes no work; restart it,"
            " or put the task in the backlog (tt assign --anyone)."
        )


def parse_task_ref(ref: str) -> tuple[str, bool]:
    """(``ref`` normalised, whether it is a full id). Raises NotFoundError for a reference
    that cannot name a task (not hex, shorter than 4 characters)."""
    ref = ref.strip().lower()
    if is_uuid(ref):
        return ref, True
    if len(ref) < 4 or any(c not in "0123456789abcdef-" for c in ref):
        raise NotFoundError(f"{ref!r} is not a task id (give the id or 4+ of its first hex).")
    return ref, False


def one_match(ref: str, matches: Sequence[str]) -> str:
    """The one task id the prefix ``ref`` matched; NotFoundError or
    AmbiguousReferenceError otherwise."""
    if not matches:
        raise NotFoundError(f"No task with id starting {ref!r}.")
    if len(matches) > 1:
        raise AmbiguousReferenceError(
            f"Task reference {ref!r} is ambiguous: {', '.join(m[:8] for m in matches)}."
        )
    return matches[0]


def refuse_not_pending(task: Task) -> None:
    """Raise InvalidTransitionError unless ``task`` waits in the backlog (pending)."""
    if task.state is not TaskState.PENDING:
        raise InvalidTransitionError(
            f"Task {task.short_id} is {task.state.value}, not waiting in the backlog."
        )


def refuse_not_owner(task: Task, agent: str, agent_name: str, verb: str) -> None:
    """Raise InvalidTransitionError unless ``task`` is assigned to the agent ``agent``
    (named ``agent_name``): an agent may only ``verb`` its own tasks."""
    if task.assigned_to == agent:
        return
    whose = "nobody" if task.assigned_to is None else "another agent"
    raise InvalidTransitionError(
        f"Task {task.short_id} is assigned to {whose}, not to {agent_name}; an agent may"
        f" only {verb} its own tasks."
    )


class TaskService(TaskRounds):
    """Tasks and their states. Who acts (``sender``: an agent id, default the supervisor)
    is always a parameter, never read from the process environment.

    Cancellation: every method is cancellable; each change is one atomic script, so a
    cancelled call has changed everything it was to change, or nothing.
    """

    def __init__(self, store: Store, agents: AgentService) -> None:
        self.store = store
        self.agents = agents
        self.keys = store.keys
        #: Whether :meth:`list` also shows Rust hash-format tasks (read-only commands).
        self.show_legacy = False

    # -- reading ---------------------------------------------------------------------

    async def list(
        self,
        *,
        state: TaskState | None = None,
        tag: str | None = None,
        agent: str | None = None,
    ) -> builtins.list[Task]:
        """Tasks in creation order, filtered by state, tag and agent id."""
        ids = await indexes.task_ids(self.store)
        tasks = await self.store.mget(Task, [self.keys.task(i) for i in ids])
        if self.show_legacy:  # Rust hash-format tasks too (read-only commands)
            tasks += sorted(await legacy.hash_tasks(self.store), key=lambda t: t.created_at)
        return [
            t
            for t in tasks
            if (state is None or t.state is state)
            and (tag is None or tag in t.tags)
            and (agent is None or t.assigned_to == agent)
        ]

    async def get(self, task_id: str) -> Task:
        try:
            task = await self.store.get(Task, self.keys.task(task_id))
        except Exception as exc:
            if not legacy.is_wrongtype(exc):
                raise
            task = await legacy.hash_task(self.store, task_id)
        if task is None:
            raise NotFoundError(f"No task with id {task_id}.")
        return task

    async def resolve(self, ref: str) -> Task:
        """A task by full id or unique id prefix (at least 4 characters)."""
        ref, full = parse_task_ref(ref)
        if full:
            return await self.get(ref)
        ids = await indexes.task_ids(self.store)
        return await self.get(one_match(ref, [i for i in ids if i.startswith(ref)]))

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

    def _new(
        self,
        description: str,
        tags: Sequence[str],
        parent: str | None,
        max_attempts: int | None = None,
    ) -> Task:
        description = check_text(description, "the task description").strip()
        if max_attempts is not None and max_attempts < 1:
            raise InvalidInputError(f"max_attempts must be 1 or more, not {max_attempts}.")
        for tag in tags:
            check_text(tag, f"tag {tag!r}")
        if not description:
            raise InvalidTransitionError("A task needs a non-empty description.")
        if len(description) > MAX_DESCRIPTION:
            raise InvalidTransitionError(
                f"Task description is {len(description)} characters; the limit is"
                f" {MAX_DESCRIPTION}."
            )
        task = Task.new(description, tags=[t.strip() for t in tags if t.strip()], parent_id=parent)
        return attrs.evolve(task, max_attempts=max_attempts)

    def index_ops(self, task: Task) -> builtins.list[Op]:
        return [["ZADD", self.keys.tasks, str(parse_time(task.created_at).timestamp()), task.id]]

    async def create(
        self,
        description: str,
        *,
        tags: Sequence[str] = (),
        parent: str | None = None,
        backlog: bool = True,
        max_attempts: int | None = None,
    ) -> Task:
        """A new pending task, put in the backlog unless ``backlog`` is false.
        ``max_attempts``: attempts before a real failure fails it (None: the town's
        ``runtime.max_attempts``; less than 1 is refused with InvalidInputError)."""
        parent_id = (await self.resolve(parent)).id if parent else None
        task = self._new(description, tags, parent_id, max_attempts)
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
        sender: str = SUPERVISOR_ID,
        tags: Sequence[str] = (),
        parent: str | None = None,
        anyone: bool = False,
        max_attempts: int | None = None,
    ) -> Task:
        """Create a task assigned to the agent and send it ``task_assign``, atomically.

        A cold, stopped or error agent (or one that disappears) is refused
        (InvalidTransitionError, NotFoundError), checked in the same atomic step as the
        write; with ``anyone`` the task goes to the backlog instead (state ``pending``).
        ``max_attempts`` as for :meth:`create`.
        """
        agent = await self.agents.resolve(agent_ref)
        parent_id = (await self.resolve(parent)).id if parent else None
        base = self._new(description, tags, parent_id, max_attempts)
        while True:
            raw = await self.store.get_raw(self.keys.agent(agent.id))
            current = None if raw is None else loads(Agent, raw, where=self.keys.agent(agent.id))
            try:
                if current is None:
                    raise NotFoundError(f"Agent {agent.name} no longer exists.")
                refuse_terminal(current)
            except (InvalidTransitionError, NotFoundError):
                if not anyone:
                    raise
                return await self.create(
                    base.description,
                    tags=base.tags,
                    parent=parent_id,
                    backlog=True,
                    max_attempts=max_attempts,
                )
            task = base.transition("assign", assigned_to=agent.id, assigned_by=sender)
            message = Message.new(sender, agent.id, TaskAssign(task.id))
            ops = [
                *self.index_ops(task),
                *self.store.deliver_ops(message, event=False),
                self.store.event_op(
                    "assign",
                    agent=agent.id,
                    task=task.id,
                    text=f"{current.name} <- {task.description[:120]}",
                ),
            ]
            try:
                await self.store.apply(
                    self.keys.task(task.id),
                    expected=None,
                    new=dumps(task),
                    ops=ops,
                    guards=[(["GET", self.keys.agent(agent.id)], raw)],  # liveness guard
                )
            except GuardFailed:
                continue  # the agent's record changed meanwhile: look at it again
            return task

    async def assign_existing(
        self,
        task_ref: str,
        agent_id: str,
        *,
        sender: str = SUPERVISOR_ID,
        backlog_only: bool = False,
    ) -> Task:
        """Give a pending (backlog) task to an agent: state, backlog and message at once.
        ``task_ref``: the task's id or a unique prefix of it. ``backlog_only``: only a
        task still waiting in the backlog (a claim), else also reassign an assigned one.

        Two round trips: one read of the task and the agent (none when this process
        knows both records' last values: ``Store.known``), one atomic write that
        happens only if both records are still the ones read (so the agent is live and
        the task in the state checked, at the moment of the write); a concurrent change
        makes it decide again. Raises NotFoundError (task or agent gone),
        AmbiguousReferenceError, InvalidTransitionError (agent terminal, or the task not
        pending/assigned, or not pending with ``backlog_only``); nothing is changed then.
        Cancellable: once the write was sent, it may or may not have happened.
        """
        ref, full = parse_task_ref(task_ref)
        agent_key = self.keys.agent(agent_id)
        guess = True
        while True:
            found = await lookups.task_and_agent(
                self.store, ref, full=full, agent=agent_id, guess=guess
            )
            guess = False
            task_id = ref if full else one_match(ref, found.matches)
            task_raw, agent_raw = found.task_raw, found.agent_raw
            try:
                task = self._loaded(task_id, task_raw)
                if agent_raw is None:
                    raise NotFoundError(f"No agent with id {agent_id} in town {self.keys.town}.")
                if agent_raw == lookups.NOT_A_STRING:
                    raise legacy.refuse_change(f"Agent {agent_id}")
                agent = self.store.parse(Agent, agent_key, agent_raw)
                refuse_terminal(agent)
                if backlog_only:
                    refuse_not_pending(task)
                new = task.transition("assign", assigned_to=agent_id, assigned_by=sender)
            except TinytownError:
                if found.guessed:
                    continue  # refused on what this process last saw: decide on a fresh read
                raise
            message = Message.new(sender, agent_id, TaskAssign(task.id))
            ops = [
                ["LREM", self.keys.backlog, "0", task.id],
                *self.store.deliver_ops(message, event=False),
                self.store.event_op(
                    "assign", agent=agent_id, task=task.id, text=f"assigned {task.short_id}"
                ),
            ]
            try:
                await self.store.apply(
                    self.keys.task(task.id),
                    expected=task_raw,
                    new=dumps(new),
                    ops=ops,
                    guards=[(["GET", agent_key], agent_raw)],
                )
            except (Conflict, GuardFailed):
                continue  # the task or the agent changed meanwhile: decide again
            return new

    def _loaded(self, task_id: str, raw: str | None) -> Task:
        """The task record read by a lookup; NotFoundError when absent, LegacyRecordError
        for a Rust hash record (read-only here)."""
        if raw is None:
            raise NotFoundError(f"No task with id {task_id}.")
        if raw == lookups.NOT_A_STRING:
            raise legacy.refuse_change(f"Task {task_id}")
        return self.store.parse(Task, self.keys.task(task_id), raw)

    # -- state changes ---------------------------------------------------------------

    async def complete(
        self,
        ref: str,
        result: str = "Completed",
        *,
        sender: str = SUPERVISOR_ID,
        owner: str | None = None,
    ) -> Task:
        """Mark completed; the assigner gets ``task_done``. ``owner``: see :meth:`finish`."""
        return await self.finish(ref, "complete", result, sender=sender, owner=owner)

    async def fail(
        self,
        ref: str,
        reason: str = "Failed",
        *,
        sender: str = SUPERVISOR_ID,
        owner: str | None = None,
    ) -> Task:
        """Mark failed; the assigner gets ``task_failed``. ``owner``: see :meth:`finish`."""
        return await self.finish(ref, "fail", reason, sender=sender, owner=owner)

    async def cancel(
        self,
        ref: str,
        reason: str = "Cancelled",
        *,
        sender: str = SUPERVISOR_ID,
        owner: str | None = None,
    ) -> Task:
        """Mark cancelled (nobody is notified). ``owner``: see :meth:`finish`."""
        return await self.finish(ref, "cancel", reason, sender=sender, owner=owner)

    async def finish(
        self,
        task_ref: str,
        verb: str,
        text: str,
        *,
        count: bool = True,
        sender: str = SUPERVISOR_ID,
        usage: Usage | None = None,
        owner: str | None = None,
    ) -> Task:
        """Move a task to a terminal state, notify its assigner, and (``count``) add it to
        its agent's ``tasks_completed`` (the runtime counts in its own round update).
        ``task_ref``: the task's id or a unique prefix of it. ``sender`` signs the notice
        when the task has no assignee; ``usage`` (what the round that finished it cost)
        is added to the task's in the same step. ``owner``: an agent id that must be the
        task's assignee (an agent finishing its own task), checked in the same step.

        Two round trips: one read (the task, and the agent whose count changes; none
        when this process knows their last values), one atomic write of the task, the
        notice, the event and the agent's count, done only if both records are still
        the ones read (else it decides again). Raises
        NotFoundError, AmbiguousReferenceError, InvalidTransitionError (a finished task,
        another agent's task with ``owner``); nothing is changed then. After a lost reply
        the task record tells whether the write happened. Cancellable: once the write was
        sent, it may or may not have happened.
        """
        text = check_text(text, "the result text")[-MAX_RESULT:]
        ref, full = parse_task_ref(task_ref)
        agent = owner or (lookups.ASSIGNEE if count else None)
        guess = True
        while True:
            found = await lookups.task_and_agent(
                self.store, ref, full=full, agent=agent, guess=guess
            )
            guess = False
            task_id = ref if full else one_match(ref, found.matches)
            try:
                task = self._loaded(task_id, found.task_raw)
                if owner is not None:
                    refuse_not_owner(task, owner, self._name_in(found.agent_raw, owner), verb)
                new, ops = self._finished(task, verb, text, sender, usage)
            except TinytownError:
                if found.guessed:
                    continue  # refused on what this process last saw: decide on a fresh read
                raise
            guards: builtins.list[tuple[Op, str | int]] = []
            if count and new.state is TaskState.COMPLETED and task.assigned_to:
                guards, bump = self._count_ops(task.assigned_to, found)
                ops += bump
            try:
                await self.store.apply(
                    self.keys.task(task.id),
                    expected=found.task_raw,
                    new=dumps(new),
                    ops=ops,
                    guards=guards,
                )
            except (Conflict, GuardFailed):
                continue  # the task or its agent changed meanwhile: decide again
            return new

    def _finished(
        self, task: Task, verb: str, text: str, sender: str, usage: Usage | None
    ) -> tuple[Task, builtins.list[Op]]:
        """The finished task and the ops that go with it: out of the backlog, the
        assigner's notice, the event."""
        new = task.transition(verb, result=text)
        if usage is not None:
            new = attrs.evolve(new, usage=task.usage + usage)
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

    def _count_ops(
        self, agent_id: str, found: lookups.TaskRead
    ) -> tuple[builtins.list[tuple[Op, str | int]], builtins.list[Op]]:
        """(guards, ops) adding one to the agent's ``tasks_completed``, from its record
        as read (the guard makes the write wait for an unchanged record). A pruned agent
        (or a Rust hash one) is not counted: the task keeps its record."""
        raw = found.agent_raw if found.agent_id == agent_id else None
        if raw is None or raw == lookups.NOT_A_STRING:
            return [], []
        key = self.keys.agent(agent_id)
        agent = self.store.parse(Agent, key, raw)
        bumped = attrs.evolve(agent, tasks_completed=agent.tasks_completed + 1)
        return [(["GET", key], raw)], [["SET", key, dumps(bumped)]]

    @staticmethod
    def _name_in(agent_raw: str | None, agent_id: str) -> str:
        """The agent's name from its raw record (its id when unreadable), for messages."""
        if agent_raw is None or agent_raw == lookups.NOT_A_STRING:
            return agent_id
        try:
            return loads(Agent, agent_raw).name
        except MalformedRecordError:
            return agent_id

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
