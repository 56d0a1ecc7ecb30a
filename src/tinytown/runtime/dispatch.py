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

import math
from typing import Protocol

import trio

from tinytown.errors import ConfigError, InvalidTransitionError, NotFoundError
from tinytown.model import Agent, AgentState, Task, TaskState
from tinytown.runtime.context import Context

BACKLOG_WAKE = "backlog"
PAGE = 64


class IdleAgents(Protocol):
    """What the dispatcher needs from the supervisor."""

    def idle_agents(self) -> list[tuple[str, float]]:
        """(agent id, idle since) of every actor waiting with nothing to do."""
        ...

    def mark_busy(self, agent_id: str) -> None:
        """The agent was given work; a no-op if it is gone."""
        ...


def matches(task: Task, agent: Agent) -> bool:
    """Untagged tasks suit any worker; tagged ones an agent whose role or name is a tag."""
    if not task.tags:
        return True
    return bool({agent.role_id, agent.name} & set(task.tags))


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
        a long backlog costs nothing while every agent is busy. Cancellable."""
        town = self.ctx.town
        idle = await self._idle_agents()
        given = 0
        start = 0
        while idle:
            ids = await self.ctx.queues.backlog_page(start, PAGE)
            if not ids:
                break
            tasks = await self.ctx.store.mget(Task, [town.keys.task(i) for i in ids])
            handed = 0
            for task in tasks:
                candidates = (
                    [a for a in idle if matches(task, a)] if task.state is TaskState.PENDING else []
                )
                if not candidates:
                    continue
                agent = candidates[0]  # idle the longest: fair turns
                idle.remove(agent)
                try:
                    await town.tasks.assign_existing(task.id, agent.id)
                except (InvalidTransitionError, NotFoundError):
                    # Claimed meanwhile, or the agent is no longer live (the guard refused):
                    # the agent stays a candidate only while its actor still waits idle.
                    if agent.id in dict(self.agents.idle_agents()):
                        idle.insert(0, agent)
                    continue
                self.agents.mark_busy(agent.id)
                handed += 1
                if not idle:
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

    async def _idle_agents(self) -> list[Agent]:
        """Agents whose actor waits with nothing to do and an empty inbox, longest first."""
        since = dict(self.agents.idle_agents())
        if not since:
            return []
        keys = self.ctx.town.keys
        records = await self.ctx.store.mget(Agent, [keys.agent(i) for i in since])
        lengths = await self.ctx.queues.inbox_lengths([a.id for a in records])
        ready = [
            agent
            for agent, queued in zip(records, lengths, strict=True)
            if agent.state is AgentState.IDLE and queued == 0
        ]
        held = self.ctx.holds.held()
        if held:
            ready = [a for a in ready if not self._held(a, held)]
        return sorted(ready, key=lambda a: since.get(a.id) or trio.current_time())
