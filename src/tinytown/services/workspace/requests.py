"""The merge queue's requests in Redis: ``tt merge`` adds, the runtime's worker claims.

A request is JSON in the list ``tt:<town>:merges``. The worker (runtime/merge_queue.py)
moves the oldest one to ``tt:<town>:merges:claimed`` -- only when that list is empty, so
one merge runs at a time -- and removes it from there in the same atomic step that
records the outcome (a ``merge`` event). A runtime that dies mid-merge leaves the request
claimed; the next run works it again (a merge that had landed is then ``up-to-date``).
So requests survive crashes and none is done twice to the base.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs
import trio

from tinytown.errors import InvalidInputError, MalformedRecordError, TimeoutExpiredError
from tinytown.model import Agent, new_id, now
from tinytown.services.workspace.merges import MergeOutcome
from tinytown.store.records import GuardFailed, Op, Store

#: The wake-up key of the merge queue (published on the town's wake channel).
MERGE_WAKE = "merges"


@attrs.frozen
class MergeRequest:
    id: str
    agent_id: str
    name: str
    branch: str
    requested_at: str

    def dumps(self) -> str:
        return json.dumps(attrs.asdict(self), sort_keys=True)

    @classmethod
    def loads(cls, raw: str) -> MergeRequest:
        try:
            data = json.loads(raw)
            return cls(**{f.name: str(data[f.name]) for f in attrs.fields(cls)})
        except (ValueError, TypeError, KeyError) as exc:
            raise MalformedRecordError(f"Merge request {raw[:80]!r} is malformed: {exc}.") from None


class MergeRequests:
    """The queue of one town. Cancellation: every method is cancellable; each change is
    one atomic step (done entirely or not at all)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys

    async def lists(self) -> tuple[list[str], list[str]]:
        """(waiting, claimed) raw requests, oldest first."""
        waiting, claimed = await self.store.read_lists([self.keys.merges, self.keys.merges_claimed])
        return waiting, claimed

    async def queued(self) -> list[MergeRequest]:
        """Requests not yet finished: the one being worked on first, then the waiting ones."""
        waiting, claimed = await self.lists()
        return [MergeRequest.loads(raw) for raw in claimed + waiting]

    async def request(self, agent: Agent) -> tuple[MergeRequest, int, bool]:
        """Queue the agent's branch for merging; returns (request, position from 1, whether
        it was new). An agent already queued keeps its place (nothing is added)."""
        if not agent.branch or not agent.worktree:
            raise InvalidInputError(
                f"Agent {agent.name} has no worktree; only agents spawned with --worktree"
                " have a branch to merge."
            )
        while True:
            waiting, claimed = await self.lists()
            queued = [MergeRequest.loads(raw) for raw in claimed + waiting]
            for position, found in enumerate(queued, 1):
                if found.agent_id == agent.id:
                    return found, position, False
            req = MergeRequest(new_id(), agent.id, agent.name, agent.branch, now())
            ops: list[Op] = [
                ["RPUSH", self.keys.merges, req.dumps()],
                ["PUBLISH", self.keys.wake, MERGE_WAKE],
                self.store.event_op(
                    "merge-queued",
                    agent=agent.id,
                    request=req.id,
                    text=f"{agent.name}: {agent.branch} queued for merging",
                ),
            ]
            try:  # the queue unchanged since we looked: no duplicate slips in
                await self.store.apply(
                    self.keys.merges,
                    ops=ops,
                    guards=[
                        (["LLEN", self.keys.merges], len(waiting)),
                        (["LLEN", self.keys.merges_claimed], len(claimed)),
                    ],
                )
            except GuardFailed:
                continue
            return req, len(queued) + 1, True

    async def claim(self) -> list[str]:
        """The claimed request (raw), moving the oldest waiting one there first when none
        is claimed. Empty: nothing to do. A lost reply is recovered by reading the claimed
        list, which holds whatever was moved."""
        _, claimed = await self.lists()
        if claimed:
            return claimed
        try:
            await self.store.apply(
                self.keys.merges_claimed,
                ops=[["LMOVE", self.keys.merges, self.keys.merges_claimed, "LEFT", "RIGHT"]],
                guards=[(["LLEN", self.keys.merges_claimed], 0), (["EXISTS", self.keys.merges], 1)],
            )
        except GuardFailed:
            pass
        return (await self.lists())[1]

    def finish_ops(self, raw: str, req: MergeRequest | None, outcome: MergeOutcome) -> list[Op]:
        """Ops removing the claimed request and recording its outcome (one atomic step)."""
        fields = {
            "request": req.id if req else None,
            "agent": req.agent_id if req else None,
            "status": outcome.status,
            "branch": outcome.branch,
            "base": outcome.base,
            "before": outcome.before,
            "after": outcome.after,
            "files": ",".join(outcome.files)[:500] or None,
            "output": outcome.output[-1000:] or None,
            "text": f"{req.name if req else '?'}: {outcome.text}"[:500],
        }
        return [
            ["LREM", self.keys.merges_claimed, "1", raw],
            self.store.event_op("merge", **fields),
        ]

    async def finish(self, raw: str, req: MergeRequest | None, outcome: MergeOutcome) -> None:
        await self.store.run_ops(self.finish_ops(raw, req, outcome))

    async def wait(
        self, request_id: str, after: str, *, timeout: float | None = None
    ) -> dict[str, str]:
        """The fields of the ``merge`` event of request ``request_id`` (looking at events
        after id ``after``): blocks on the event stream, never polls. Raises
        TimeoutExpiredError. Cancellable."""
        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            async for event in self.store.events.follow(after):
                if event.kind == "merge" and event.fields.get("request") == request_id:
                    return event.fields
        raise TimeoutExpiredError(f"The merge did not finish within {timeout:g} s.")


def position_text(req: MergeRequest, position: int, new: bool, running: bool) -> str:
    where = "first in the queue" if position == 1 else f"number {position} in the queue"
    verb = "Queued" if new else "Already queued"
    then = "" if running else "; the town merges it when it runs ('tt run')"
    return f"{verb} {req.name} ({req.branch}) for merging, {where}{then}."


Reporter = Callable[[str], None]
