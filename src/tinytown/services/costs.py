"""What the town's rounds cost and the limits on it: ``tt costs`` and ``tt budget``.

The runtime records each round's :class:`~tinytown.model.Usage` on the task, the agent's
running totals and the town's totals; this module reads them back as tables, and sets
budgets: an agent's own (``Agent.budget``, one atomic record update) and the defaults
in ``tinytown.toml`` ``[budget]`` (per agent, per task, for the town; 0 there means no
limit). Enforcing budgets is the runtime's job: a budget raised here never resumes an
agent the runtime paused for spending; ``tt resume`` does.
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Sequence
from typing import Literal

import attrs

from tinytown.errors import InvalidInputError
from tinytown.model import Agent, AgentState, Budget, Task, Usage
from tinytown.model.usage import KEEP as KEEP  # defined with Budget: town.py needs it cheaply
from tinytown.model.usage import Keep as Keep
from tinytown.services.agents import AgentService, check_budget, gone
from tinytown.services.config import TownConfig
from tinytown.services.tasks import TaskService
from tinytown.store import usage as usage_store
from tinytown.store.records import Op, Store

#: What a budget applies to: one agent's own limit, or a default of tinytown.toml.
Scope = Literal["agent", "task", "town"]
SCOPES: tuple[Scope, ...] = ("agent", "task", "town")
#: Agents paused for spending carry a state reason starting with this word.
BUDGET_REASON = "budget"

_TOKENS_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(k|m)?\s*(?:tokens?|tok)?$", re.IGNORECASE)
_USD_RE = re.compile(r"^\$?\s*(\d+(?:\.\d+)?)\s*(?:usd|\$|dollars?)?$", re.IGNORECASE)
_TOKEN_UNIT_RE = re.compile(r"\d\s*(?:[km]\s*(?:tokens?|tok)?|tokens?|tok)$")
_NONE_WORDS = frozenset({"none", "off", "unlimited"})


# -- parsing and formatting -------------------------------------------------------------------


def parse_usd(text: str) -> float | None:
    """Dollars from ``5``, ``2.50``, ``$5`` or ``5usd``; None for ``none`` (no limit).

    Raises InvalidInputError (one sentence) for anything else, zero or negative."""
    cleaned = text.strip()
    if cleaned.lower() in _NONE_WORDS:
        return None
    match = _USD_RE.fullmatch(cleaned)
    value = float(match.group(1)) if match else math.nan
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(
            f"{text!r} is not an amount of dollars (e.g. 5, 2.50 or $5; 'none' for no limit)."
        )
    return value


def parse_tokens(text: str) -> int | None:
    """Tokens from ``200000``, ``200k``, ``1.5M`` or ``50000tokens``; None for ``none``.

    Raises InvalidInputError (one sentence) for anything else, or fewer than one token."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    if cleaned.lower() in _NONE_WORDS:
        return None
    match = _TOKENS_RE.fullmatch(cleaned)
    value = 0
    if match:
        scale = {"k": 1_000, "m": 1_000_000}.get((match.group(2) or "").lower(), 1)
        value = int(float(match.group(1)) * scale)
    if value < 1:
        raise InvalidInputError(
            f"{text!r} is not a number of tokens (e.g. 200000, 200k or 1.5M; 'none' for no limit)."
        )
    return value


def parse_budget(items: Sequence[str]) -> Budget | None:
    """``tt spawn --budget`` values: a plain number or one with ``$``/``usd`` is dollars,
    one with ``k``, ``M`` or ``tokens`` is tokens (``--budget 5 --budget 200k``: both).

    Raises InvalidInputError for a bad value or two of the same kind."""
    usd: float | None = None
    tokens: int | None = None
    for item in items:
        lowered = item.strip().lower()
        is_tokens = bool(_TOKEN_UNIT_RE.search(lowered))
        if is_tokens:
            if tokens is not None:
                raise InvalidInputError("Give at most one token budget (e.g. --budget 200k).")
            tokens = parse_tokens(item)
        else:
            if usd is not None:
                raise InvalidInputError("Give at most one dollar budget (e.g. --budget 5).")
            usd = parse_usd(item)
    if usd is None and tokens is None:
        return None
    return Budget(usd=usd, tokens=tokens)


def format_usd(value: float) -> str:
    """``$1.23``; below a cent but not zero: ``<$0.01``."""
    if 0 < value < 0.005:
        return "<$0.01"
    return f"${value:,.2f}"


def format_tokens(count: int) -> str:
    """Compact: ``950``, ``12.3k``, ``4.56M``."""
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.1f}k".replace(".0k", "k")
    return f"{count / 1_000_000:.2f}M"


def describe_usage(usage: Usage) -> str:
    """``$1.23, 45.6k tokens, 3 rounds`` (``nothing yet`` when empty)."""
    if usage.empty:
        return "nothing yet"
    rounds = f"{usage.rounds} round" + ("" if usage.rounds == 1 else "s")
    return f"{format_usd(usage.cost_usd)}, {format_tokens(usage.tokens)} tokens, {rounds}"


def describe_budget(budget: Budget | None) -> str:
    """``$5.00``, ``200k tokens``, ``$5.00 or 200k tokens`` or ``no limit``."""
    if budget is None or (budget.usd is None and budget.tokens is None):
        return "no limit"
    parts = []
    if budget.usd is not None:
        parts.append(format_usd(budget.usd))
    if budget.tokens is not None:
        parts.append(f"{format_tokens(budget.tokens)} tokens")
    return " or ".join(parts)


def _budget(usd: float | None, tokens: int | None) -> Budget | None:
    return None if usd is None and tokens is None else Budget(usd=usd, tokens=tokens)


def _changed(
    old: Budget | None, usd: float | Keep | None, tokens: int | Keep | None
) -> Budget | None:
    base = old or Budget()
    new_usd = base.usd if isinstance(usd, Keep) else usd
    new_tokens = base.tokens if isinstance(tokens, Keep) else tokens
    return _budget(new_usd, new_tokens)


# -- reports ----------------------------------------------------------------------------------


@attrs.frozen
class CostRow:
    """One line of ``tt costs``: an agent (``by="agent"``) or a task (``by="task"``)."""

    id: str
    name: str  # the agent's name, or the task's short id
    usage: Usage
    state: str
    budget: Budget | None = None  # the agent's own limit (None: the town's default)
    agent: str | None = None  # for a task: the name of the agent it is assigned to
    description: str = ""


@attrs.frozen
class CostReport:
    """``rows`` and their sum ``total``; ``town`` is the town's running total, which also
    counts agents since removed (``tt prune``)."""

    by: str
    rows: list[CostRow]
    total: Usage
    town: Usage
    town_budget: Budget | None


@attrs.frozen
class Budgets:
    """The town's limits: its total, the defaults per agent and per task
    (tinytown.toml ``[budget]``), and the agents' own (``own``: those that have one)."""

    town: Budget | None
    agent: Budget | None
    task: Budget | None
    own: list[Agent]
    spent: Usage


class CostService:
    """Cost records and budgets of one town. Every method is cancellable; a record
    change is one atomic compare-and-set (done entirely or not at all)."""

    def __init__(
        self, store: Store, agents: AgentService, tasks: TaskService, config: TownConfig
    ) -> None:
        self.store = store
        self.agents = agents
        self.tasks = tasks
        self.config = config
        self.keys = store.keys

    # -- reading ---------------------------------------------------------------------

    async def town_usage(self) -> Usage:
        """The town's running total (tokens, dollars, rounds, CLI time): ``tt:<town>:usage``,
        added to by each round with its acknowledgement, so it also counts agents pruned
        since. Cancellable (reads only)."""
        return await usage_store.town_usage(self.store)

    def default_budget(self, scope: Scope) -> Budget | None:
        """The ``[budget]`` limit for ``scope`` in tinytown.toml (None: no limit). The file
        is re-read first if it changed (one stat)."""
        self.config.refresh()
        usd = float(self.config.setting(f"budget.{scope}_usd"))
        tokens = int(self.config.setting(f"budget.{scope}_tokens"))
        return _budget(usd or None, tokens or None)

    async def costs(self, by: str = "agent") -> CostReport:
        """Spending per agent (every agent, oldest first) or per task (the tasks that
        cost anything, oldest first), with their total and the town's. Raises
        InvalidInputError for another ``by``. Cancellable (nothing changes)."""
        if by not in ("agent", "task"):
            raise InvalidInputError(f"Costs are shown by agent or by task, not by {by!r}.")
        agents = await self.agents.list()
        if by == "agent":
            rows = [CostRow(a.id, a.name, a.usage, a.state.value, budget=a.budget) for a in agents]
        else:
            names = {a.id: a.name for a in agents}
            rows = [_task_row(t, names) for t in await self.tasks.list() if not t.usage.empty]
        total = sum((r.usage for r in rows), Usage())
        town = await self.town_usage()
        return CostReport(by, rows, total, town, self.default_budget("town"))

    async def budgets(self) -> Budgets:
        """Every limit that applies in the town and what it spent. Cancellable."""
        agents = await self.agents.list()
        return Budgets(
            town=self.default_budget("town"),
            agent=self.default_budget("agent"),
            task=self.default_budget("task"),
            own=[a for a in agents if a.budget is not None],
            spent=await self.town_usage(),
        )

    async def paused_for_budget(self, ref: str | None = None) -> builtins.list[Agent]:
        """Agents (or the agent ``ref``) that the runtime paused for spending: raising a
        budget does not resume them. Cancellable."""
        agents = [await self.agents.resolve(ref)] if ref else await self.agents.list()
        return [a for a in agents if spending_paused(a)]

    # -- changing --------------------------------------------------------------------

    async def set_agent_budget(
        self,
        ref: str,
        *,
        usd: float | Keep | None = KEEP,
        tokens: int | Keep | None = KEEP,
    ) -> Agent:
        """Set one agent's own limit (``None`` removes a measure, :data:`KEEP` leaves it).
        The town's ``[budget] agent_*`` limit applies besides it (whichever is reached
        first pauses the agent).

        One atomic record update with a ``budget`` event. Raising the limit does not
        resume an agent paused for spending (``tt resume`` does). Raises NotFoundError,
        AmbiguousReferenceError, InvalidInputError (a bad amount). Cancellable: once the
        write was sent, a cancelled call may or may not have happened."""
        _check_amounts(usd, tokens)
        agent_id = (await self.agents.resolve(ref)).id

        def change(agent: Agent) -> tuple[Agent, builtins.list[Op]]:
            new = attrs.evolve(agent, budget=_changed(agent.budget, usd, tokens))
            text = f"budget of {agent.name}: {describe_budget(new.budget)}"
            if new.budget is None:
                text += " of its own (the town's [budget] still applies)"
            return new, [self.store.event_op("budget-set", agent=agent.id, text=text)]

        return await self.store.update(
            Agent, self.keys.agent(agent_id), change, missing=lambda: gone(agent_id)
        )

    async def set_default_budget(
        self,
        scope: Scope,
        *,
        usd: float | Keep | None = KEEP,
        tokens: int | Keep | None = KEEP,
    ) -> Budget | None:
        """Set the ``[budget]`` limit of tinytown.toml for ``scope`` (each agent, each
        task, or the town's total); None removes it (written as 0), :data:`KEEP` leaves
        it. The file keeps its comments and layout; both values are checked before it is
        written once. Records a ``budget`` event. Raises InvalidInputError, ConfigError.
        Cancellable before the file is written (the event may then be missing)."""
        if scope not in SCOPES:
            raise InvalidInputError(
                f"A budget applies to an agent, a task or the town, not {scope!r}."
            )
        _check_amounts(usd, tokens)
        new = _changed(self.default_budget(scope), usd, tokens)
        section = self.config.data.setdefault("budget", {})
        section[f"{scope}_usd"] = float(new.usd) if new and new.usd is not None else 0.0
        section[f"{scope}_tokens"] = int(new.tokens) if new and new.tokens is not None else 0
        self.config.save()
        what = {"agent": "each agent", "task": "each task", "town": "the town"}[scope]
        await self.store.run_ops(
            [self.store.event_op("budget-set", text=f"budget of {what}: {describe_budget(new)}")]
        )
        return new


def spending_paused(agent: Agent) -> bool:
    """Whether the runtime paused ``agent`` because it reached a budget."""
    reason = (agent.state_reason or "").lower()
    return agent.state is AgentState.PAUSED and reason.startswith(BUDGET_REASON)


def _check_amounts(usd: object, tokens: object) -> None:
    """Refuse amounts an API caller passes that the parsers above would refuse."""
    if usd is KEEP and tokens is KEEP:
        raise InvalidInputError("Give a dollar limit, a token limit, or both.")
    check_budget(
        Budget(
            usd=None if usd is KEEP else usd,  # type: ignore[arg-type]
            tokens=None if tokens is KEEP else tokens,  # type: ignore[arg-type]
        )
    )


def _task_row(task: Task, names: dict[str, str]) -> CostRow:
    agent = names.get(task.assigned_to or "", task.assigned_to[:8] if task.assigned_to else "")
    return CostRow(
        task.id,
        task.short_id,
        task.usage,
        task.state.value,
        agent=agent or None,
        description=task.description,
    )
