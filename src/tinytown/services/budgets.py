"""Spending limits: which budget a town, an agent or a task has reached. Pure functions
of their inputs (no I/O): the runtime reads the totals and acts on the answer.

Limits come from ``[budget]`` in ``tinytown.toml`` (``agent_usd``, ``agent_tokens``,
``task_usd``, ``task_tokens``, ``town_usd``, ``town_tokens``; 0 = no limit) and from an
agent's own ``Agent.budget`` (``tt spawn --budget``), which applies besides the town's
per-agent limit: whichever is reached first stops the agent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from tinytown.model import Budget, Usage


@attrs.frozen
class Limits:
    """The limits in force for one agent's rounds (None: no limit of that kind)."""

    agent: tuple[Budget, ...] = ()
    task: Budget | None = None
    town: Budget | None = None


def _budget(setting: Callable[[str], Any], prefix: str) -> Budget | None:
    usd = float(setting(f"budget.{prefix}_usd") or 0)
    tokens = int(setting(f"budget.{prefix}_tokens") or 0)
    if usd <= 0 and tokens <= 0:
        return None
    return Budget(usd if usd > 0 else None, tokens if tokens > 0 else None)


def limits(setting: Callable[[str], Any], own: Budget | None = None) -> Limits:
    """The limits from the town's settings (``setting(key)``) and the agent's own budget."""
    agent = tuple(b for b in (_budget(setting, "agent"), own) if b is not None)
    return Limits(agent=agent, task=_budget(setting, "task"), town=_budget(setting, "town"))


def reached(
    limits: Limits,
    *,
    agent: Usage,
    town: Usage,
    tasks: Sequence[tuple[str, Usage]] = (),
) -> str | None:
    """The first limit reached, as a phrase for a state reason (``town limit $5.00 of
    $5.00``, ``agent limit 1,000 of 1,000 tokens``, ``task 1a2b3c4d limit ...``), or None.

    The town limit is named first: raising one agent's budget does not help then."""
    if limits.town is not None:
        hit = limits.town.exceeded_by(town)
        if hit:
            return f"town limit {hit}"
    for budget in limits.agent:
        hit = budget.exceeded_by(agent)
        if hit:
            return f"agent limit {hit}"
    if limits.task is not None:
        for task_id, usage in tasks:
            hit = limits.task.exceeded_by(usage)
            if hit:
                return f"task {task_id[:8]} limit {hit}"
    return None


def advice(which: str, agent_name: str) -> str:
    """What to do about a reached limit, in one sentence for the supervisor's mail."""
    if which.startswith("town"):
        how = "raise budget.town_usd / budget.town_tokens (tt config)"
    elif which.startswith("task"):
        how = "raise budget.task_usd / budget.task_tokens (tt config), or cancel the task"
    else:
        how = "raise the agent's budget (tt budget set, or budget.agent_usd / _tokens)"
    return f"{agent_name} paused, {which}: {how}, then tt resume {agent_name}."
