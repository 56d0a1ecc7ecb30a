"""Recovery: find agents whose runtime is gone and work nobody is doing, and give it
back. Never destroys."""

from __future__ import annotations

import attrs

from tinytown.errors import InvalidTransitionError, MalformedRecordError, NotFoundError
from tinytown.model import Agent, Message, MessageType, Task, TaskState, dumps, loads
from tinytown.model.ids import SUPERVISOR_ID, age_seconds
from tinytown.services import control
from tinytown.services.agents import AgentService
from tinytown.services.tasks import TaskService
from tinytown.store import indexes
from tinytown.store.records import GuardFailed, Op, Store

#: An agent whose heartbeat is older than this (seconds) has lost its runtime.
STALE_AFTER = 30.0


def heartbeat_age(agent: Agent, beat: str | None) -> float | None:
    """Seconds since the agent's last heartbeat: the fresher of its record's
    ``last_heartbeat`` (refreshed about once a minute) and ``beat``, its entry in the
    heartbeat hash (every ``runtime.heartbeat_interval``; see ``indexes.heartbeats``)."""
    ages = [a for a in (age_seconds(agent.last_heartbeat), age_seconds(beat)) if a is not None]
    return min(ages) if ages else None


@attrs.frozen
class Orphan:
    agent: Agent
    heartbeat_age: float | None
    why: str


@attrs.frozen
class StuckTask:
    """An ``assigned`` or ``running`` task its agent is not working on, and why."""

    task: Task
    agent: Agent | None  # None: the agent no longer exists
    why: str
    raw: str = attrs.field(repr=False, eq=False)  # the record judged (for the atomic requeue)


@attrs.frozen
class RecoverReport:
    """What ``recover`` found (and, unless a dry run, changed)."""

    agents: list[Orphan]
    tasks: list[StuckTask]


@attrs.frozen
class Reclaimable:
    """Work held by dead agents, or tasks whose assignee is gone."""

    messages: list[tuple[Agent, str, Message]]  # (dead agent, list key, message)
    tasks: list[Task]
    #: (list key, message id) -> the message exactly as stored (what a move removes)
    raws: dict[tuple[str, str], str] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen
class ReclaimReport:
    """Exactly what ``reclaim`` moved, and where."""

    #: destination (an agent's name, or ``supervisor``) -> messages moved into its inbox
    delivered: dict[str, int]
    #: task assignments removed whose task had already left the dead agent (requeued by
    #: the kill, finished, reassigned): nothing to deliver, the task is where it belongs
    spent_assignments: int
    #: tasks put back in the backlog
    requeued_tasks: int
    #: tasks given to the ``to`` agent
    assigned_tasks: int
    #: where the work was sent: the ``to`` agent's name, or ``backlog``
    destination: str

    @property
    def moved_messages(self) -> int:
        return sum(self.delivered.values())

    @property
    def nothing(self) -> bool:
        return not (
            self.delivered or self.spent_assignments or self.requeued_tasks or self.assigned_tasks
        )


class RecoveryService:
    """Finding dead agents and stuck work, and giving the work back.

    Cancellation: every method is cancellable; each mark, requeue and move is atomic on
    its own, so a cancelled ``recover``/``reclaim`` has done some of its steps (whole) and
    can simply be run again.
    """

    def __init__(self, store: Store, agents: AgentService, tasks: TaskService) -> None:
        self.store = store
        self.agents = agents
        self.tasks = tasks
        self.keys = store.keys

    async def orphans(self, stale_after: float = STALE_AFTER) -> list[Orphan]:
        """Live-state agents with no runtime, or whose heartbeat stopped."""
        running = await control.runtime_holder(self.store)
        live = [a for a in await self.agents.list() if not a.state.terminal]
        beats = await indexes.heartbeats(self.store, [a.id for a in live])
        out = []
        for agent in live:
            age = heartbeat_age(agent, beats.get(agent.id))
            if running is None:
                out.append(Orphan(agent, age, "the town is not running"))
            elif age is None or age > stale_after:
                out.append(Orphan(agent, age, f"no heartbeat for {age or 0:.0f} s"))
        return out

    async def recover(
        self, stale_after: float = STALE_AFTER, *, dry_run: bool = False
    ) -> RecoverReport:
        """Mark every orphan agent ``stopped`` (with the reason), then requeue every task
        left ``assigned``/``running`` to an agent that is not working on it (see
        :meth:`stuck_tasks`). Other messages stay where they are until ``reclaim`` (or a
        restart) moves them. With ``dry_run`` nothing changes: the report lists what
        would be done (tasks of agents that would be marked included)."""
        found = await self.orphans(stale_after)
        if not dry_run:
            for orphan in found:
                try:
                    await self.agents.mark(
                        orphan.agent.id,
                        "orphan",
                        reason=f"recovered: {orphan.why}",
                        event_verb="recover",
                    )
                except (InvalidTransitionError, NotFoundError):
                    continue  # it ended (or was pruned) by itself meanwhile
        stopped = {o.agent.id for o in found} if dry_run else set()
        stuck = await self.stuck_tasks(assume_stopped=stopped)
        if dry_run:
            return RecoverReport(found, stuck)
        requeued = []
        for item in stuck:
            if await self.tasks.requeue_if_unchanged(item.raw, why=f"recovered: {item.why}"):
                requeued.append(item)
            # else it moved on meanwhile (started, finished, reassigned): not stuck
        return RecoverReport(found, requeued)

    async def stuck_tasks(
        self, *, assume_stopped: set[str] | frozenset[str] = frozenset()
    ) -> list[StuckTask]:
        """Tasks ``assigned`` or ``running`` to an agent that will not do them: the agent
        is gone, cold, stopped or error (or in ``assume_stopped``), or it is live but
        neither holds the task's ``task_assign`` (queued or in flight) nor has it as its
        current task. Each task is judged on one atomic snapshot of the task, its agent
        and the agent's lists, so a task being taken or finished is never misjudged."""
        out = []
        for listed in await self.tasks.list():
            if listed.state not in (TaskState.ASSIGNED, TaskState.RUNNING):
                continue
            if not listed.assigned_to:
                continue
            snap = await indexes.work_snapshot(self.store, listed.id, listed.assigned_to)
            item = self._judge(snap, listed.id, listed.assigned_to, assume_stopped)
            if item is not None:
                out.append(item)
        return out

    def _judge(
        self,
        snap: indexes.WorkSnapshot,
        task_id: str,
        agent_id: str,
        assume_stopped: set[str] | frozenset[str],
    ) -> StuckTask | None:
        if snap.task_raw is None:
            return None
        try:
            task = loads(Task, snap.task_raw, where=self.keys.task(task_id))
            agent = (
                None
                if snap.agent_raw is None
                else loads(Agent, snap.agent_raw, where=self.keys.agent(agent_id))
            )
        except MalformedRecordError as exc:
            self.store.warnings.append(str(exc))
            return None
        if (
            task.state not in (TaskState.ASSIGNED, TaskState.RUNNING)
            or task.assigned_to != agent_id
        ):
            return None  # it moved on between the listing and the snapshot
        if agent is None:
            return StuckTask(task, None, "its agent no longer exists", snap.task_raw)
        if agent.state.terminal or agent.id in assume_stopped:
            state = "stopped" if agent.id in assume_stopped else agent.state.value
            return StuckTask(task, agent, f"its agent {agent.name} is {state}", snap.task_raw)
        if agent.current_task == task.id or _holds(snap.inbox + snap.inflight, task.id):
            return None  # the agent is on it, or will take it
        doing = "working on it" if task.state is TaskState.RUNNING else "holding its assignment"
        return StuckTask(task, agent, f"{agent.name} is not {doing}", snap.task_raw)

    async def reclaimable(self, from_agent: str | None = None) -> Reclaimable:
        """What ``reclaim`` would move: dead agents' queued and in-flight messages, and
        unfinished tasks assigned to dead or missing agents."""
        agents = await self.agents.list()
        by_id = {a.id: a for a in agents}
        dead = [a for a in agents if a.state.terminal]
        if from_agent:
            chosen = await self.agents.resolve(from_agent)
            if not chosen.state.terminal:
                raise InvalidTransitionError(
                    f"Agent {chosen.name} is {chosen.state.value}; only dead agents' work is"
                    " reclaimed (kill or recover it first)."
                )
            dead = [chosen]
        messages: list[tuple[Agent, str, Message]] = []
        raws: dict[tuple[str, str], str] = {}
        for agent in dead:
            for key in (self.keys.inflight(agent.id), self.keys.inbox(agent.id)):
                for raw in await indexes.raw_list(self.store, key):
                    try:
                        messages.append((agent, key, loads(Message, raw)))
                        raws[(key, messages[-1][2].id)] = raw
                    except MalformedRecordError as exc:
                        self.store.warnings.append(str(exc))
        dead_ids = {a.id for a in dead}
        tasks = [
            t
            for t in await self.tasks.list()
            if t.state in (TaskState.ASSIGNED, TaskState.RUNNING)
            and t.assigned_to
            and (t.assigned_to in dead_ids or (not from_agent and t.assigned_to not in by_id))
        ]
        return Reclaimable(messages, tasks, raws)

    async def reclaim(
        self, *, to: str | None = None, from_agent: str | None = None
    ) -> ReclaimReport:
        """Move the reclaimable work: every message to ``to``'s inbox (or, without ``to``:
        task assignments become backlog tasks and other messages go to the supervisor's
        inbox); orphaned tasks to ``to`` or the backlog. Each move is atomic; no message
        is ever dropped."""
        target = await self.agents.resolve(to) if to else None
        if target and target.state.terminal:
            raise InvalidTransitionError(f"Agent {target.name} is {target.state.value}.")
        found = await self.reclaimable(from_agent)
        moving = {t.id for t in found.tasks}
        delivered: dict[str, int] = {}
        spent = 0
        for agent, key, msg in found.messages:
            raw = found.raws.get((key, msg.id)) or dumps(msg)
            ops: list[Op] = []
            assignment = msg.type is MessageType.TASK_ASSIGN
            if not assignment:
                recipient = target.id if target else SUPERVISOR_ID
                ops += self.store.deliver_ops(attrs.evolve(msg, recipient=recipient), event=False)
            # else: an assignment's effect is its task, which is moved below (or already
            # left the agent, e.g. requeued by the kill); the message itself is spent.
            ops.append(
                self.store.event_op(
                    "reclaim", agent=agent.id, text=f"{msg.type.value} from {agent.name}"
                )
            )
            try:  # removed (the guard) and delivered in one step, only if still there
                await self.store.apply(
                    self.keys.meta, ops=ops, guards=[(["LREM", key, "1", raw], 1)]
                )
            except GuardFailed:
                continue  # taken or moved meanwhile by someone else: not ours to move
            if not assignment:
                where = target.name if target else "supervisor"
                delivered[where] = delivered.get(where, 0) + 1
            elif getattr(msg.body, "task_id", None) not in moving:
                spent += 1
        requeued = assigned = 0
        for task in found.tasks:
            try:
                await self.tasks.requeue(
                    task.id, why="reclaimed" if target else "reclaimed from a dead agent"
                )
            except InvalidTransitionError:
                continue
            if target:
                try:
                    await self.tasks.assign_existing(task.id, target.id)
                    assigned += 1
                    continue
                except InvalidTransitionError:
                    pass  # e.g. taken from the backlog meanwhile: it is requeued
            requeued += 1
        return ReclaimReport(
            delivered, spent, requeued, assigned, target.name if target else "backlog"
        )


def _holds(raws: list[str], task_id: str) -> bool:
    """Whether any of the raw messages assigns ``task_id``."""
    for raw in raws:
        if task_id not in raw:
            continue  # cheap pre-check before parsing
        try:
            msg = loads(Message, raw)
        except MalformedRecordError:
            continue
        if msg.type is MessageType.TASK_ASSIGN and getattr(msg.body, "task_id", None) == task_id:
            return True
    return False
