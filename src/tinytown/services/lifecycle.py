"""Agent lifecycle: control verbs, giving a stopped agent's work back, pruning.

This coordinates the agent, task and recovery services, so it sits above them (they
never import it): agents.py records states, tasks.py moves tasks, recovery.py finds
and moves dead agents' work.
"""

from __future__ import annotations

import attrs

from tinytown.errors import InvalidTransitionError
from tinytown.model import Agent, dumps
from tinytown.services import control
from tinytown.services.agents import AgentService, check_verb
from tinytown.services.recovery import RecoveryService
from tinytown.services.tasks import TaskService
from tinytown.services.workspace import worktrees as workspaces
from tinytown.store import indexes
from tinytown.store.records import DELETE, Conflict, GuardFailed, Op, Store


@attrs.frozen
class ControlOutcome:
    """What a control verb did: the agent after it, and whether a runtime applied it."""

    agent: Agent
    live: bool
    detail: str = ""


class AgentLifecycle:
    """Control verbs and housekeeping for a town's agents.

    Cancellation: every method is cancellable. Each state change is one atomic step, so
    a cancelled call leaves each record either changed or not; a verb cancelled while
    waiting for the running town's answer may still be applied by it.
    """

    def __init__(
        self, store: Store, agents: AgentService, tasks: TaskService, recovery: RecoveryService
    ) -> None:
        self.store = store
        self.agents = agents
        self.tasks = tasks
        self.recovery = recovery
        self.keys = store.keys

    # -- control verbs ---------------------------------------------------------------

    async def interrupt(self, ref: str) -> ControlOutcome:
        """Pause the agent now: its running CLI is suspended (SIGSTOP), no new messages."""
        return await self._control(ref, "interrupt")

    async def resume(self, ref: str) -> ControlOutcome:
        """Continue a paused agent (SIGCONT to its CLI; it takes messages again)."""
        return await self._control(ref, "resume")

    async def close(self, ref: str) -> ControlOutcome:
        """Drain: no new messages, the current round finishes, then ``cold``."""
        return await self._control(ref, "close")

    async def kill(self, ref: str) -> ControlOutcome:
        """Stop now: the CLI's process group is terminated, its work goes back to the queue."""
        return await self._control(ref, "kill")

    async def restart(self, ref: str) -> ControlOutcome:
        """Bring a terminal agent back (same id); refused while it is active."""
        return await self._control(ref, "restart")

    async def _control(self, ref: str, verb: str) -> ControlOutcome:
        """Ask the running town to apply ``verb`` (waiting for its answer), or record the
        effect directly when no town runs. Cancellable while waiting for the answer (the
        runtime may still apply the verb)."""
        agent = await self.agents.resolve(ref)
        check_verb(agent, verb)
        if await control.runtime_holder(self.store):
            reply = await control.request(self.store, verb, agent_id=agent.id)
            if not reply.get("ok"):
                raise InvalidTransitionError(str(reply.get("error") or f"{verb} failed."))
            detail = str(reply.get("detail") or "")
            return ControlOutcome(await self.agents.get(agent.id), True, detail)
        return ControlOutcome(await self.apply_offline(agent.id, verb), False)

    async def apply_offline(self, agent_id: str, verb: str) -> Agent:
        """Record ``verb``'s effect when no actor runs for the agent; a kill also gives
        the agent's work back (:meth:`release_work`)."""
        agent = await self.agents.record_offline(agent_id, verb)
        if verb == "kill":
            await self.release_work(agent)
        return agent

    async def release_work(self, agent: Agent) -> int:
        """Give a stopped agent's unfinished work back: in-flight messages to its inbox,
        its unfinished tasks to the backlog. Returns the number of tasks requeued."""
        await indexes.return_inflight(self.store, agent.id)
        return await self.tasks.requeue_agent_tasks(agent.id)

    # -- housekeeping ----------------------------------------------------------------

    async def prune(self, *, everything: bool = False, force: bool = False) -> list[Agent]:
        """Remove terminal agents (or, with ``everything`` and no running town, all agents)
        and their keys. Nothing they hold is destroyed: their unfinished tasks go to the
        backlog and their other messages to the supervisor's inbox (as ``tt reclaim
        --to-backlog`` does) before the records go. Tasks are never removed. An agent's git
        worktree holding work the base lacks is refused (LostWorkError) unless ``force``,
        which saves the work to a rescue ref before removing it
        (services/workspace/worktrees.py)."""
        running = await control.runtime_holder(self.store)
        removed = []
        for agent in await self.agents.list():
            if not (agent.state.terminal or (everything and not running)):
                continue
            await workspaces.check_removable(self.agents.config, agent, force=force)
            if not agent.state.terminal:
                agent = await self.apply_offline(agent.id, "kill")
            await self.recovery.reclaim(from_agent=agent.id)
            ops: list[Op] = [
                ["HDEL", self.keys.agents, agent.name],
                ["DEL", self.keys.inbox(agent.id), self.keys.inflight(agent.id)],
                self.store.event_op("prune", agent=agent.id, text=f"pruned {agent.name}"),
            ]
            try:
                await self.store.apply(
                    self.keys.agent(agent.id),
                    expected=dumps(agent),
                    new=DELETE,
                    ops=ops,
                    # a message that arrived meanwhile keeps the agent for the next prune
                    guards=[
                        (["LLEN", self.keys.inbox(agent.id)], 0),
                        (["LLEN", self.keys.inflight(agent.id)], 0),
                    ],
                )
            except (Conflict, GuardFailed):
                continue
            removed.append(agent)
            await workspaces.remove(self.agents.config, agent, force=True)  # checked above
        return removed
