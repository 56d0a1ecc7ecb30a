"""The merge queue's worker: one merge at a time, in the supervisor's nursery.

It wakes when ``tt merge`` queues a request (the ``merges`` wake-up), never polls. On
start it cleans what a crashed run left (:func:`tinytown.services.workspace.merges.recover`: the
scratch worktree, an unfinished landing), then works the claimed request first: a request
survives a runtime crash in Redis (services/workspace/requests.py) and is merged again; if
its merge had landed, it is ``up-to-date`` now.
"""

from __future__ import annotations

from tinytown.errors import MalformedRecordError, NotFoundError, TinytownError
from tinytown.model import Agent
from tinytown.runtime.context import Context
from tinytown.services.workspace import merges
from tinytown.services.workspace import worktrees as workspaces
from tinytown.services.workspace.merges import MergeOutcome
from tinytown.services.workspace.requests import MERGE_WAKE, MergeRequest, MergeRequests


class MergeWorker:
    """Works the town's merge queue until cancelled."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.requests = MergeRequests(ctx.store)

    async def run(self) -> None:
        """Clean up after a crash, then merge each request as it comes. Cancellable: a
        merge cancelled before it lands leaves the base untouched and its request claimed
        (the next run merges it); the scratch worktree is removed (bounded, shielded)."""
        try:
            for line in await merges.recover(self.ctx.config):
                self.ctx.report(f"merge queue: {line}")
        except TinytownError as exc:  # no git, not a repository: merges will say so
            self.ctx.report(f"merge queue: cannot check for an interrupted merge ({exc})")
        while True:
            token = self.ctx.hub.token(MERGE_WAKE)
            claimed = await self.requests.claim()
            if claimed:
                await self.work(claimed[0])
            else:
                await self.ctx.hub.wait(MERGE_WAKE, token)

    async def work(self, raw: str) -> MergeOutcome:
        """Merge one claimed request and record its outcome (removing it from the queue in
        the same atomic step). A conflict or failing check with ``[workspace] on_conflict
        = "task"`` first sends the agent a task to resolve it."""
        try:
            req: MergeRequest | None = MergeRequest.loads(raw)
        except MalformedRecordError as exc:
            req = None
            outcome = MergeOutcome("error", "?", "?", str(exc))
        if req is not None:
            try:
                outcome = await merges.merge_branch(self.ctx.config, req.branch, req.name)
            except TinytownError as exc:
                outcome = MergeOutcome("error", req.branch, "?", str(exc))
            if outcome.status in ("conflict", "check-failed"):
                await self._ask_agent(req, outcome)
        await self.requests.finish(raw, req, outcome)
        who = req.name if req else "merge queue"
        self.ctx.report(f"{who}: {outcome.status}: {outcome.text}")
        return outcome

    async def _ask_agent(self, req: MergeRequest, outcome: MergeOutcome) -> None:
        """With ``on_conflict = "task"``, give the agent a task to make its branch merge.
        Done before the request is finished: a crash in between may send it twice, never
        not at all."""
        try:
            if workspaces.setting(self.ctx.config, "workspace.on_conflict") != "task":
                return
            agent = await self.ctx.town.agents.get(req.agent_id)
            await self.ctx.town.tasks.assign(agent.id, conflict_task(agent, outcome))
        except (NotFoundError, TinytownError) as exc:
            self.ctx.report(f"{req.name}: could not send the merge problem as a task ({exc})")


def conflict_task(agent: Agent, outcome: MergeOutcome) -> str:
    """The task an agent gets when its branch cannot be merged."""
    if outcome.status == "conflict":
        problem = f"conflicts with {outcome.base} in {', '.join(outcome.files[:20])}"
        fix = (
            f"merge {outcome.base} into your branch in your worktree (git merge {outcome.base}),"
            " resolve the conflicts and commit"
        )
    else:
        problem = f"did not pass the town's check ({outcome.text})"
        fix = "make the check pass on your branch and commit"
    return (
        f"Your branch {outcome.branch} could not be merged: it {problem}. Please {fix};"
        f" then it can be merged again (tt merge {agent.name})."
    )
