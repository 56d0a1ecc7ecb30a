"""Backlog dispatch: hand pending backlog tasks to idle agents whose role matches.

Runs in the supervisor. It wakes when a task enters the backlog (``backlog`` wake-up)
or an agent becomes idle, never by polling. Each hand-over is the atomic
``pending -> assigned`` transition, guarded by the agent's liveness, so a task is never
given twice (even when people claim tasks by hand at the same moment) and never to an
agent that was killed or closed meanwhile; a task no idle agent matches stays queued.
Agents whose CLI is held after a rate limit (runtime/ratelimit.py) get nothing until the
hold ends; :meth:`Dispatcher.watch_holds` wakes the dispatcher then.
"""

from __future__ import annotations

import collections
import math
from typing import Protocol, TypeVar

import trio

from tinytown.errors import (
    ConfigError,
    InvalidTransitionError,
    MalformedRecordError,
    NotFoundError,
)
from tinytown.model import Agent, AgentState, Task, TaskState
from tinytown.runtime.context import Context
from tinytown.store import lookups

BACKLOG_WAKE = "backlog"
PAGE = 64


class IdleAgents(Protocol):
    """What the dispatcher needs from the supervisor (all in memory, no I/O)."""

    def idle_agents(self) -> list[tuple[str, float]]:
        """(agent id, idle since) of every actor waiting with nothing to do, longest
        idle first."""
        ...

    def is_idle(self, agent_id: str) -> bool:
        """Whether the agent's actor still waits with nothing to do."""
        ...

    def mark_busy(self, agent_id: str) -> None:
        """The agent was given work; a no-op if it is gone."""
        ...


def matches(task: Task, agent: Agent) -> bool:
    """Untagged tasks suit any worker; tagged ones an agent whose role or name is a tag."""
    if not task.tags:
        return True
    return bool({agent.role_id, agent.name} & set(task.tags))


T = TypeVar("T")


class Dispatcher:
    def __init__(self, ctx: Context, agents: IdleAgents) -> None:
        self.ctx = ctx
        self.agents = agents

    async def run(self) -> None:
        """Dispatch until cancelled (cancellable at every wait; an assignment is atomic)."""
        while True:
            token = self.ctx.hub.token(BACKLOG_WAKE)
            await self.dispatch_once()
            await self.ctx.hub.wait(BACKLOG_WAKE, token)

    async def dispatch_once(self) -> int:
        """One pass over the backlog; returns how many tasks were handed out.

        Reads the queue a page at a time and stops as soon as no idle agent is left, so
        a long backlog costs nothing while every agent is busy. Idle agents come from the
        supervisor's memory, longest idle first; only as many of their records are read
        as the page's pending tasks can use (:class:`_Candidates`), so a pass costs
        O(tasks handed out), not O(agents). Cancellable."""
        town = self.ctx.town
        pool = _Candidates(self)
        given = 0
        start = 0
        # The first page holds as many tasks as there are idle agents (one agent freed
        # by a round reads one task, not 64); later pages double, for tags nobody takes.
        size = min(PAGE, len(pool))
        while pool:
            page = await lookups.backlog_page(self.ctx.store, start, size)
            size = min(PAGE, size * 2)
            if not page:
                break
            ids = [task_id for task_id, _ in page]
            tasks = self._parsed(Task, [(town.keys.task(i), raw) for i, raw in page])
            pending = [t for t in tasks if t.state is TaskState.PENDING]
            handed = 0
            for n, task in enumerate(pending):
                agent = await pool.pick(task, wanted=len(pending) - n)
                if agent is None:
                    continue
                try:
                    await town.tasks.assign_existing(task.id, agent.id)
                except (InvalidTransitionError, NotFoundError):
                    # Claimed meanwhile, or the agent is no longer live (the guard refused):
                    # the agent stays a candidate only while its actor still waits idle.
                    pool.put_back(agent)
                    continue
                self.agents.mark_busy(agent.id)
                handed += 1
                if not pool:
                    break
            given += handed
            start += len(ids) - handed  # handed-out ids left the list
        return given

    async def watch_holds(self) -> None:
        """Wake the dispatcher each time a CLI's rate-limit hold ends, so its idle agents
        get backlog work again. Runs until cancelled; no polling (sleeps until the next
        end, or until a hold is set)."""
        holds = self.ctx.holds
        while True:
            end = holds.next_end()
            with trio.move_on_at(math.inf if end is None else end):
                await holds.changed()
                continue
            self.ctx.hub.notify(BACKLOG_WAKE)

    def _held(self, agent: Agent, held: set[str]) -> bool:
        """Whether the agent's CLI is held after a rate limit."""
        try:
            name, _ = self.ctx.config.resolve_cli(agent.cli)
        except ConfigError:
            return False  # its actor reports the bad preset
        return name in held

    def _parsed(self, cls: type[T], read: list[tuple[str, str | None]]) -> list[T]:
        """The records read (key, raw), absent ones skipped, malformed ones noted."""
        out: list[T] = []
        store = self.ctx.store
        for key, raw in read:
            if raw is None:
                continue
            try:
                out.append(store.parse(cls, key, raw))
            except MalformedRecordError as exc:
                store.warnings.append(str(exc))
        return out

    async def verified(self, agent_ids: list[str]) -> list[Agent]:
        """Those of ``agent_ids`` whose record says idle, whose inbox is empty and whose
        CLI is not held, in the given order: one round trip for the lot."""
        if not agent_ids:
            return []
        keys = self.ctx.town.keys
        read = await lookups.agents_and_inboxes(self.ctx.store, agent_ids)
        ready = []
        for agent_id, (raw, queued) in zip(agent_ids, read, strict=True):
            parsed = self._parsed(Agent, [(keys.agent(agent_id), raw)])
            if parsed and parsed[0].state is AgentState.IDLE and queued == 0:
                ready.append(parsed[0])
        held = self.ctx.holds.held()
        if held:
            ready = [a for a in ready if not self._held(a, held)]
        return ready


class _Candidates:
    """The idle agents of one dispatch pass, read from Redis only when needed.

    ``unread`` are ids from the supervisor's memory (longest idle first); ``ready`` are
    agents whose records were read and checked (idle, empty inbox, CLI not held). A task
    is matched against ``ready`` first; only if none suits it are more records read, as
    many as the pending tasks left in the page (doubling while a tag finds no match), so
    untagged work reads one record per task handed out, and an unmatched tag reads each
    idle agent at most once per pass."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._agents = dispatcher.agents
        self.unread = collections.deque(agent_id for agent_id, _ in self._agents.idle_agents())
        self.ready: list[Agent] = []

    def __len__(self) -> int:
        return len(self.unread) + len(self.ready)

    async def pick(self, task: Task, wanted: int) -> Agent | None:
        """The longest-idle candidate ``task`` suits (taken out of the pool), or None.
        ``wanted``: how many agents the rest of the page could use. Cancellable."""
        batch = max(wanted, 1)
        while True:
            # the actor may have taken mail or been paused since its record was read
            self.ready = [a for a in self.ready if self._agents.is_idle(a.id)]
            for agent in self.ready:
                if matches(task, agent):
                    self.ready.remove(agent)
                    return agent
            if not self.unread:
                return None
            await self._read(batch)
            batch *= 2

    def put_back(self, agent: Agent) -> None:
        """A hand-over to ``agent`` was refused: it stays first in line while idle."""
        if self._agents.is_idle(agent.id):
            self.ready.insert(0, agent)

    async def _read(self, n: int) -> None:
        ids: list[str] = []
        while self.unread and len(ids) < n:
            agent_id = self.unread.popleft()
            if self._agents.is_idle(agent_id):  # busy since the pass began: no read
                ids.append(agent_id)
        self.ready += await self._dispatcher.verified(ids)
