"""What a round did in its agent's worktree: the commits it made, what it left uncommitted.

The agent actor calls :func:`before_round` before the CLI runs and :func:`after_round`
after it: the commits between the two ``HEAD`` s go on a ``commits`` event and on each of
the round's tasks (``Task.commits``, ``before..after``); uncommitted changes are noted on
the event, or with ``[workspace] autocommit = true`` committed on the agent's branch with
the task id in the message. An agent without a worktree costs nothing here. Git trouble
never fails a round: it becomes a report line.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from tinytown.errors import NotFoundError, TinytownError
from tinytown.model import Agent, Task, now
from tinytown.runtime.context import Context
from tinytown.services.workspace import worktrees as workspaces
from tinytown.services.workspace.git import count, dirty_paths
from tinytown.store.records import Op


@attrs.frozen
class RoundCommits:
    before: str | None
    after: str | None
    commits: int
    dirty: int
    autocommitted: str | None = None

    @property
    def span(self) -> str | None:
        """``before..after`` (short ids) when the round moved ``HEAD``, else None."""
        if not self.before or not self.after or self.before == self.after:
            return None
        return f"{self.before[:12]}..{self.after[:12]}"


def round_env(ctx: Context, agent: Agent) -> dict[str, str]:
    """``TT_WORKTREE`` and ``TT_BRANCH`` for an agent with a worktree (else nothing)."""
    return workspaces.env_for(ctx.config, agent)


async def before_round(ctx: Context, agent: Agent) -> str | None:
    """The worktree's ``HEAD`` before the round (None without a worktree). Cancellable."""
    if not agent.worktree:
        return None
    try:
        return await workspaces.head(ctx.config, agent)
    except TinytownError as exc:
        ctx.report(f"{agent.name}: cannot read its worktree's HEAD ({exc})")
        return None


async def after_round(
    ctx: Context, agent: Agent, before: str | None, task_ids: Sequence[str]
) -> RoundCommits | None:
    """Record what the round did in the agent's worktree (see the module docstring);
    returns it, or None without a worktree. Cancellable: cancelled, the commits may be
    recorded on some tasks and not on the event."""
    if not agent.worktree:
        return None
    try:
        return await _after_round(ctx, agent, before, task_ids)
    except TinytownError as exc:
        ctx.report(f"{agent.name}: cannot record its round's commits ({exc})")
        return None


async def _after_round(
    ctx: Context, agent: Agent, before: str | None, task_ids: Sequence[str]
) -> RoundCommits:
    config = ctx.config
    path = workspaces.path_of(config, agent)
    assert path is not None
    made = None
    if config.setting("workspace.autocommit"):
        task = f" for task {task_ids[0]}" if task_ids else ""
        made = await workspaces.commit_all(
            config, agent, f"tt: {agent.name} round {agent.rounds_completed + 1}{task}"
        )
    after = await workspaces.head(config, agent)
    commits = await count(path, f"{before}..{after}") if before and after else 0
    dirty = len(await dirty_paths(path)) if path.is_dir() else 0
    result = RoundCommits(before, after, commits, dirty, made)
    ops: list[Op] = [_event(ctx, agent, result, task_ids)]
    await ctx.store.run_ops(ops)
    if result.span:
        for task_id in task_ids:
            await _record_on_task(ctx, task_id, result.span)
    return result


def _event(ctx: Context, agent: Agent, result: RoundCommits, task_ids: Sequence[str]) -> Op:
    text = f"{agent.name}: round made {workspaces.plural(result.commits, 'commit')}"
    if result.autocommitted:
        text += " (its changes committed: autocommit)"
    if result.dirty:
        text += f"; {workspaces.plural(result.dirty, 'uncommitted file')} left in its worktree"
    return ctx.store.event_op(
        "commits",
        agent=agent.id,
        task=task_ids[0] if task_ids else None,
        before=result.before,
        after=result.after,
        commits=str(result.commits),
        dirty=str(result.dirty),
        text=text,
    )


async def _record_on_task(ctx: Context, task_id: str, span: str) -> None:
    def change(task: Task) -> tuple[Task, list[Op]]:
        if span in task.commits:  # recorded already (a retried round)
            return task, []
        return attrs.evolve(task, commits=(*task.commits, span), updated_at=now()), []

    try:
        await ctx.store.update(
            Task, ctx.store.keys.task(task_id), change, missing=lambda: NotFoundError(task_id)
        )
    except NotFoundError:
        pass  # the task is gone; the event keeps the record
