"""The workspace verbs of the Python API (``town.workspaces``), by agent reference.

``tt diff``, ``tt merge`` and ``tt rescue`` call these; the git work is in
services/workspace/worktrees.py (worktrees, rescue), services/workspace/merges.py (merging) and
services/workspace/requests.py (the queue the running town works).
"""

from __future__ import annotations

import attrs

from tinytown.errors import InvalidInputError, TinytownError
from tinytown.model import Agent
from tinytown.services import control
from tinytown.services.agents import AgentService
from tinytown.services.config import TownConfig
from tinytown.services.workspace import merges
from tinytown.services.workspace import worktrees as workspaces
from tinytown.services.workspace.merges import MergeOutcome
from tinytown.services.workspace.requests import MergeRequest, MergeRequests
from tinytown.services.workspace.worktrees import Rescue, WorkState
from tinytown.store.records import Store


@attrs.frozen
class Queued:
    """A merge request as ``tt merge`` reports it."""

    request: MergeRequest
    position: int
    new: bool


class WorkspaceService:
    """Worktrees, diffs, merges and rescues of one town's agents. Cancellation: every
    method is cancellable (see the modules it calls)."""

    def __init__(self, store: Store, config: TownConfig, agents: AgentService) -> None:
        self.store = store
        self.config = config
        self.agents = agents
        self.requests = MergeRequests(store)

    async def _agent(self, ref: str) -> Agent:
        agent = await self.agents.resolve(ref)
        if not agent.worktree:
            raise InvalidInputError(
                f"Agent {agent.name} has no worktree (it works in the town root);"
                " spawn agents with --worktree to give them one."
            )
        return agent

    async def state(self, ref: str) -> WorkState:
        """``ahead N, dirty M files`` of the agent's branch against the base."""
        agent = await self._agent(ref)
        found = await workspaces.state(self.config, agent)
        assert found is not None
        return found

    async def summary(self, agent: Agent) -> str | None:
        """One line for ``tt status``: ``.tt/worktrees/alice on tt/alice: ahead 1, dirty
        2 files`` (None for an agent without a worktree; git trouble is said in the line,
        never raised). Four git calls."""
        if not agent.worktree:
            return None
        try:
            found = await workspaces.state(self.config, agent)
        except TinytownError as exc:
            return f"{agent.worktree} on {agent.branch}: {exc}"
        return f"{agent.worktree} on {agent.branch}: {found.describe() if found else '?'}"

    async def diff(self, ref: str, *, stat: bool = False) -> str:
        """The agent's committed and uncommitted changes against the base (``git diff``)."""
        return await workspaces.diff(self.config, await self._agent(ref), stat=stat)

    async def with_worktrees(self) -> list[Agent]:
        return [a for a in await self.agents.list() if a.worktree]

    async def preview(self, ref: str) -> MergeOutcome:
        """What merging the agent's branch now would do (``tt merge --dry-run``)."""
        agent = await self._agent(ref)
        work = await workspaces.state(self.config, agent)
        dirty = len(work.dirty) if work else 0
        return await merges.preview(self.config, agent.branch or "", dirty)

    async def merge(self, ref: str) -> Queued:
        """Queue the agent's branch for the running town's merge queue."""
        agent = await self._agent(ref)
        await workspaces.check_repo(self.config)
        request, position, new = await self.requests.request(agent)
        return Queued(request, position, new)

    async def merge_now(self, ref: str) -> MergeOutcome:
        """Merge the agent's branch in this process, without the queue (tests, scripts;
        the town's git lock still serialises it with the runtime's merges)."""
        agent = await self._agent(ref)
        return await merges.merge_branch(self.config, agent.branch or "", agent.name)

    async def wait_merged(
        self, request: MergeRequest, after: str, *, timeout: float | None = None
    ) -> dict[str, str]:
        """The ``merge`` event of a queued request, once the town has worked it."""
        return await self.requests.wait(request.id, after, timeout=timeout)

    async def running(self) -> bool:
        return await control.runtime_holder(self.store) is not None

    async def rescues(self, name: str | None = None) -> list[Rescue]:
        """Saved work (``refs/tt/rescue/...``), oldest first."""
        return await workspaces.rescues(self.config, name)

    async def restore(self, ref: str, *, branch: str | None = None) -> tuple[str, str]:
        """Bring rescued work back as a branch; returns (branch, commit)."""
        return await workspaces.restore(self.config, ref, branch=branch)
