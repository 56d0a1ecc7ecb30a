"""Agents and their state machine."""

from __future__ import annotations

import re

import attrs

from tinytown.errors import InvalidNameError, InvalidTransitionError
from tinytown.model.enums import AgentState, AgentType, SpawnMode
from tinytown.model.ids import SUPERVISOR_ALIASES, now
from tinytown.model.usage import Budget, Usage

A = AgentState
_LIVE = frozenset({A.STARTING, A.IDLE, A.WORKING, A.PAUSED, A.DRAINING})
_TERMINAL = frozenset({A.STOPPED, A.COLD, A.ERROR})

#: Legal agent transitions, by verb: allowed source states and the target state.
AGENT_TRANSITIONS: dict[str, tuple[frozenset[AgentState], AgentState]] = {
    "ready": (frozenset({A.STARTING, A.WORKING, A.IDLE}), A.IDLE),
    "work": (frozenset({A.STARTING, A.IDLE, A.WORKING}), A.WORKING),
    "interrupt": (frozenset({A.STARTING, A.IDLE, A.WORKING, A.PAUSED}), A.PAUSED),
    "resume_idle": (frozenset({A.PAUSED}), A.IDLE),
    "resume_working": (frozenset({A.PAUSED}), A.WORKING),
    "close": (frozenset({A.STARTING, A.IDLE, A.WORKING, A.PAUSED, A.DRAINING}), A.DRAINING),
    "cool": (_LIVE, A.COLD),
    "kill": (_LIVE, A.STOPPED),
    "error": (_LIVE, A.ERROR),
    "restart": (_TERMINAL, A.STARTING),
    # Marked by `tt recover` when its runtime or heartbeat is gone.
    "orphan": (_LIVE, A.STOPPED),
}

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_agent_name(name: str) -> str:
    """Return ``name`` if it is a legal, unreserved agent name, else raise."""
    if not NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"Agent name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit."
        )
    if name.lower() in SUPERVISOR_ALIASES:
        raise InvalidNameError(f"Agent name {name!r} is reserved for the supervisor.")
    return name


@attrs.frozen
class Agent:
    """An agent's record, stored as JSON in ``tt:<town>:agent:<id>``."""

    id: str
    name: str
    nickname: str
    cli: str
    role_id: str | None = None
    agent_type: AgentType = AgentType.WORKER
    state: AgentState = AgentState.STARTING
    current_task: str | None = None
    parent_agent_id: str | None = None
    spawn_mode: SpawnMode = SpawnMode.FRESH
    current_scope: str | None = None
    created_at: str = attrs.field(factory=now)
    last_heartbeat: str = attrs.field(factory=now)
    tasks_completed: int = 0
    rounds_completed: int = 0
    max_rounds: int | None = None
    state_reason: str | None = None
    started_at: str | None = None
    #: The CLI's session, continued every round in ``resumed`` mode.
    session_id: str | None = None
    #: Running totals of its rounds' cost.
    usage: Usage = attrs.field(factory=Usage)
    #: Its own spending limit (``tt spawn --budget``), besides the town's ``[budget]``.
    budget: Budget | None = None
    #: Its git worktree, relative to the town root, and the worktree's branch (issue 12).
    worktree: str | None = None
    branch: str | None = None

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def label(self) -> str:
        """``name (Nickname)``: how the agent is shown to people."""
        return f"{self.name} ({self.nickname})"

    def transition(self, verb: str, **changes: object) -> Agent:
        """Return the agent after ``verb``, or raise :class:`InvalidTransitionError`."""
        allowed, target = AGENT_TRANSITIONS[verb]
        if self.state not in allowed:
            raise InvalidTransitionError(
                f"Agent {self.name} is {self.state.value}; cannot {verb.split('_')[0]} it."
            )
        extra: dict[str, object] = {"state": target}
        if target in (A.IDLE, A.WORKING, A.PAUSED, A.DRAINING) or target.terminal:
            extra["state_reason"] = None
        extra.update(changes)
        return attrs.evolve(self, **extra)  # type: ignore[arg-type]
