"""Tasks and their state machine."""

from __future__ import annotations

import attrs

from tinytown.errors import InvalidTransitionError
from tinytown.model.enums import TaskState
from tinytown.model.ids import new_id, now
from tinytown.model.usage import Usage

S = TaskState

#: Legal task transitions, by verb: the states a task may be in for the verb to apply,
#: and the state it moves to. Terminal states are final: no verb starts from them.
TASK_TRANSITIONS: dict[str, tuple[frozenset[TaskState], TaskState]] = {
    "assign": (frozenset({S.PENDING, S.ASSIGNED}), S.ASSIGNED),
    "start": (frozenset({S.ASSIGNED, S.RUNNING}), S.RUNNING),
    "complete": (frozenset({S.PENDING, S.ASSIGNED, S.RUNNING}), S.COMPLETED),
    "fail": (frozenset({S.PENDING, S.ASSIGNED, S.RUNNING}), S.FAILED),
    "cancel": (frozenset({S.PENDING, S.ASSIGNED, S.RUNNING}), S.CANCELLED),
    # The agent holding it died or was killed: back to the queue, unassigned.
    "requeue": (frozenset({S.ASSIGNED, S.RUNNING}), S.PENDING),
    # The round running it died but the agent lives on (runtime crash): redo it.
    "retry": (frozenset({S.RUNNING}), S.ASSIGNED),
}


@attrs.frozen
class Task:
    """A unit of work, stored as JSON in ``tt:<town>:task:<id>``."""

    id: str
    description: str
    state: TaskState = TaskState.PENDING
    assigned_to: str | None = None
    created_at: str = attrs.field(factory=now)
    updated_at: str = attrs.field(factory=now)
    completed_at: str | None = None
    result: str | None = None
    parent_id: str | None = None
    tags: tuple[str, ...] = ()
    started_at: str | None = None
    attempts: int = 0
    assigned_by: str | None = None
    plan_id: str | None = None
    #: Attempts before a real failure marks the task ``failed`` (None: the town's
    #: ``runtime.max_attempts``).
    max_attempts: int | None = None
    #: What the rounds that worked on it cost, summed.
    usage: Usage = attrs.field(factory=Usage)
    #: Commits its rounds made in the agent's worktree (``before..after`` per round).
    commits: tuple[str, ...] = ()

    @classmethod
    def new(
        cls,
        description: str,
        *,
        tags: tuple[str, ...] | list[str] = (),
        parent_id: str | None = None,
        plan_id: str | None = None,
    ) -> Task:
        stamp = now()
        return cls(
            id=new_id(),
            description=description,
            created_at=stamp,
            updated_at=stamp,
            tags=tuple(tags),
            parent_id=parent_id,
            plan_id=plan_id,
        )

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def transition(self, verb: str, **changes: object) -> Task:
        """Return the task after ``verb``, or raise :class:`InvalidTransitionError`."""
        allowed, target = TASK_TRANSITIONS[verb]
        if self.state not in allowed:
            raise InvalidTransitionError(
                f"Task {self.short_id} is {self.state.value} and cannot be {_past(verb)}."
            )
        stamp = now()
        extra: dict[str, object] = {"state": target, "updated_at": stamp}
        if target.terminal:
            extra["completed_at"] = stamp
        if verb == "start" and self.state is not S.RUNNING:
            extra["started_at"] = stamp
            extra["attempts"] = self.attempts + 1
        if verb == "requeue":
            extra["assigned_to"] = None
        extra.update(changes)
        return attrs.evolve(self, **extra)  # type: ignore[arg-type]


def _past(verb: str) -> str:
    return {
        "assign": "assigned",
        "start": "started",
        "complete": "completed",
        "fail": "failed",
        "cancel": "cancelled",
        "requeue": "requeued",
        "retry": "retried",
    }[verb]
