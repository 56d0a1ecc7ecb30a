"""Recovery: find agents whose runtime is gone, and give their work back. Never destroys."""

from __future__ import annotations

import attrs

from tinytown.errors import InvalidTransitionError, MalformedRecordError
from tinytown.model import Agent, Message, MessageType, Task, TaskState, dumps, loads
from tinytown.model.ids import SUPERVISOR_ID, age_seconds
from tinytown.services import control
from tinytown.services.agents import AgentService
from tinytown.services.tasks import TaskService
from tinytown.store.records import Op, Store

#: An agent whose heartbeat is older than this (seconds) has lost its runtime.
STALE_AFTER = 30.0


@attrs.frozen
class Orphan:
    agent: Agent
    heartbeat_age: float | None
    why: str


@attrs.frozen
class Reclaimable:
    """Work held by dead agents, or tasks whose assignee is gone."""

    messages: list[tuple[Agent, str, Message]]  # (dead agent, list key, message)
    tasks: list[Task]


@attrs.frozen
class ReclaimReport:
    moved_messages: int
    requeued_tasks: int
    destination: str


class RecoveryService:
    def __init__(self, store: Store, agents: AgentService, tasks: TaskService) -> None:
        self.store = store
        self.agents = agents
        self.tasks = tasks
        self.keys = store.keys

    async def orphans(self, stale_after: float = STALE_AFTER) -> list[Orphan]:
        """Live-state agents with no runtime, or whose heartbeat stopped."""
        running = await control.runtime_holder(self.store)
        out = []
        for agent in await self.agents.list():
            if agent.state.terminal:
                continue
            age = age_seconds(agent.last_heartbeat)
            if running is None:
                out.append(Orphan(agent, age, "the town is not running"))
            elif age is None or age > stale_after:
                out.append(Orphan(agent, age, f"no heartbeat for {age or 0:.0f} s"))
        return out

    async def recover(self, stale_after: float = STALE_AFTER) -> list[Orphan]:
        """Mark every orphan ``stopped`` (with the reason); their work stays where it is
        until ``reclaim`` (or a restart) moves it."""
        found = await self.orphans(stale_after)
        for orphan in found:
            reason = f"recovered: {orphan.why}"

            def change(a: Agent, reason: str = reason) -> tuple[Agent, list[Op]]:
                new = a.transition("orphan", state_reason=reason)
                return new, [self.agents.state_event(a, new, "recover")]

            try:
                await self.store.update(
                    Agent, self.keys.agent(orphan.agent.id), change, missing=lambda: _gone()
                )
            except InvalidTransitionError:
                continue  # it ended by itself meanwhile
        return found

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
        for agent in dead:
            for key in (self.keys.inflight(agent.id), self.keys.inbox(agent.id)):
                for raw in await self.store.redis.execute("LRANGE", key, 0, -1):
                    try:
                        messages.append((agent, key, loads(Message, raw)))
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
        return Reclaimable(messages, tasks)

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
        moved = 0
        for agent, key, msg in found.messages:
            ops: list[Op] = [["LREM", key, "1", dumps(msg)]]
            if msg.type is not MessageType.TASK_ASSIGN:
                recipient = target.id if target else SUPERVISOR_ID
                ops += self.store.deliver_ops(attrs.evolve(msg, recipient=recipient), event=False)
            # else: an assignment's effect is its task, which is moved below (or was
            # already requeued when the agent stopped); the message itself is spent.
            ops.append(
                self.store.event_op(
                    "reclaim", agent=agent.id, text=f"{msg.type.value} from {agent.name}"
                )
            )
            await self.store.run_ops(ops)
            moved += 1
        requeued = 0
        for task in found.tasks:
            try:
                if target:
                    await self.tasks.requeue(task.id, why="reclaimed")
                    await self.tasks.assign_existing(task.id, target.id)
                else:
                    await self.tasks.requeue(task.id, why="reclaimed from a dead agent")
                requeued += 1
            except InvalidTransitionError:
                continue
        return ReclaimReport(moved, requeued, target.name if target else "backlog")


def _gone() -> Exception:
    from tinytown.errors import NotFoundError

    return NotFoundError("The agent no longer exists.")
