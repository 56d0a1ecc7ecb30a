"""Backlog dispatch: hand pending backlog tasks to idle agents whose role matches.

Runs in the supervisor. It wakes when a task enters the backlog (``backlog`` wake-up)
or an agent becomes idle, never by polling. Each hand-over is the atomic
``pending -> assigned`` transition, so a task is never given twice, even when people
claim tasks by hand at the same time; a task no idle agent matches stays queued.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from tinytown.errors import InvalidTransitionError, NotFoundError
from tinytown.model import Agent, AgentState, Task, TaskState

if TYPE_CHECKING:
    from tinytown.runtime.town_runtime import Runtime

BACKLOG_WAKE = "backlog"
PAGE = 64


def matches(task: Task, agent: Agent) -> bool:
    """Untagged tasks suit any worker; tagged ones an agent whose role or name is a tag."""
    if not task.tags:
        return True
    return bool({agent.role_id, agent.name} & set(task.tags))


class Dispatcher:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def run(self) -> None:
        """Dispatch until cancelled."""
        while True:
            token = self.rt.hub.token(BACKLOG_WAKE)
            await self.dispatch_once()
            await self.rt.hub.wait(BACKLOG_WAKE, token)

    async def dispatch_once(self) -> int:
        """One pass over the backlog; returns how many tasks were handed out.

        Reads the queue a page at a time and stops as soon as no idle agent is left, so
        a long backlog costs nothing while every agent is busy."""
        town = self.rt.town
        idle = await self._idle_agents()
        given = 0
        start = 0
        while idle:
            ids = await self.rt.redis.execute("LRANGE", town.keys.backlog, start, start + PAGE - 1)
            if not ids:
                break
            tasks = await self.rt.store.mget(Task, [town.keys.task(i) for i in ids])
            handed = 0
            for task in tasks:
                candidates = (
                    [a for a in idle if matches(task, a)] if task.state is TaskState.PENDING else []
                )
                if not candidates:
                    continue
                agent = candidates[0]  # idle the longest: fair turns
                try:
                    await town.tasks.assign_existing(task.id, agent.id)
                except (InvalidTransitionError, NotFoundError):
                    continue  # claimed meanwhile
                idle.remove(agent)
                self.rt.supervisor.actors[agent.id].idle_since = None
                handed += 1
                if not idle:
                    break
            given += handed
            start += len(ids) - handed  # handed-out ids left the list
        return given

    async def _idle_agents(self) -> list[Agent]:
        """Agents whose actor waits with nothing to do and an empty inbox, longest first."""
        actors = [a for a in self.rt.supervisor.actors.values() if a.idle_since is not None]
        if not actors:
            return []
        town = self.rt.town
        records = await self.rt.store.mget(Agent, [town.keys.agent(a.id) for a in actors])
        lengths = await self.rt.redis.pipeline([["LLEN", town.keys.inbox(a.id)] for a in records])
        since = {a.id: a.idle_since for a in actors}
        ready = [
            agent
            for agent, queued in zip(records, lengths, strict=True)
            if agent.state is AgentState.IDLE and queued == 0
        ]
        return sorted(ready, key=lambda a: since.get(a.id) or trio.current_time())
