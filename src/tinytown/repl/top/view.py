"""What the dashboard shows: the immutable view the tracker (model.py) publishes and the
screen reads without locking, and the marks of what to read again."""

from __future__ import annotations

import time

import attrs

from tinytown.model import Agent, AgentState, Task, TaskState
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.control import LeaseHolder


@attrs.frozen
class Row:
    """One agent as the table shows it."""

    agent: Agent
    inbox: int = 0
    inflight: int = 0
    task: Task | None = None  # its current task, while it is its own and unfinished


@attrs.frozen
class MailLine:
    text: str
    question: bool = False


@attrs.frozen
class View:
    """The town as last seen. ``version`` grows with every change of ``rows``."""

    town: str = ""
    loaded: bool = False
    stale: bool = False  # Redis could not be read the last time
    runtime: LeaseHolder | None = None
    rows: dict[str, Row] = attrs.field(factory=dict)  # agent id -> row, oldest agent first
    tasks: dict[TaskState, int] = attrs.field(factory=dict)
    backlog: int = 0
    events: tuple[str, ...] = ()
    mail: tuple[MailLine, ...] = ()
    questions: tuple[MailLine, ...] = ()  # questions nobody has answered yet
    round_times: tuple[float, ...] = ()  # epoch seconds of the rounds ended lately
    town_cost: float | None = None  # the town's running total, where it keeps one
    version: int = 0
    members: int = 0  # grows when an agent comes or goes (not when one changes)
    counts: dict[AgentState, int] = attrs.field(factory=dict)  # agents by state
    agents_cost: float = 0.0  # the agents' usage, summed

    @property
    def names(self) -> dict[str, str]:
        out = {i: r.agent.name for i, r in self.rows.items()}
        out[SUPERVISOR_ID] = "supervisor"
        return out

    def agent_counts(self) -> dict[AgentState, int]:
        """Agents per state, in the enum's order, states without agents left out."""
        return {s: self.counts[s] for s in AgentState if self.counts.get(s)}

    def rounds_per_minute(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        return float(sum(1 for t in self.round_times if now - t <= 60.0))

    def cost(self) -> float:
        """Dollars spent so far (as the CLIs reported it): the town's running total, or
        where it keeps none the sum of its agents' (pruned agents then drop out)."""
        if self.town_cost is not None:
            return self.town_cost
        return round(self.agents_cost, 6)


@attrs.define
class Marks:
    """What events named since the last refresh, to be read again."""

    agents: set[str] = attrs.field(factory=set)
    tasks: set[str] = attrs.field(factory=set)
    backlog: bool = False
    runtime: bool = False
    usage: bool = False
    questions: bool = False

    def add(self, other: Marks) -> None:
        self.agents |= other.agents
        self.tasks |= other.tasks
        self.backlog |= other.backlog
        self.runtime |= other.runtime
        self.usage |= other.usage
        self.questions |= other.questions
