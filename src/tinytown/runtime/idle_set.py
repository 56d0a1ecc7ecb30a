"""The supervisor's in-memory set of idle agents, longest idle first.

The dispatcher must find idle agents without reading every agent record (that made each
backlog pass O(agents): 289 ms at 10,000). The actors already know when they wait with
nothing to do (their :class:`~tinytown.runtime.lifecycle.Lifecycle`), so each one keeps
its entry here up to date as its state changes: an agent is in the set exactly while
its lifecycle is ``IDLE`` with ``idle_since`` set. The set is a hint, never the truth:
the dispatcher still checks the record of the agent it picks, and the hand-over itself
is the atomic, liveness-guarded ``pending -> assigned`` write.
"""

from __future__ import annotations

from tinytown.runtime.lifecycle import Life, Lifecycle


class IdleSet:
    """Agent id -> the (trio) time it became idle, in that order.

    Entries are added when an agent becomes idle, at the current time, so insertion
    order is idle-since order and nothing needs sorting; re-adding moves an entry to
    the end. Every operation is O(1) except :meth:`items` (a copy, no I/O)."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def add(self, agent_id: str, since: float) -> None:
        self._since.pop(agent_id, None)  # re-idle: to the back of the line
        self._since[agent_id] = since

    def discard(self, agent_id: str) -> None:
        self._since.pop(agent_id, None)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._since

    def __len__(self) -> int:
        return len(self._since)

    def items(self) -> list[tuple[str, float]]:
        """(agent id, idle since), longest idle first (a snapshot: safe across awaits)."""
        return list(self._since.items())


class TrackedLifecycle(Lifecycle):
    """A lifecycle that keeps its agent's entry in an :class:`IdleSet` in step with it:
    in the set exactly while ``state is IDLE and idle_since is not None``."""

    def __init__(self, agent_id: str, idle: IdleSet, state: Life = Life.STARTING) -> None:
        super().__init__(state)
        self._agent_id = agent_id
        self._idle = idle

    def fire(self, event: str) -> Life:
        target = super().fire(event)
        if self.idle_since is None:  # leaving IDLE forgets idle_since
            self._idle.discard(self._agent_id)
        return target

    def mark_idle(self) -> bool:
        became = super().mark_idle()
        if became and self.idle_since is not None:
            self._idle.add(self._agent_id, self.idle_since)
        return became

    def mark_busy(self) -> None:
        super().mark_busy()
        self._idle.discard(self._agent_id)

    def forget(self) -> None:
        """The actor's supervision ended: whatever its last state, it takes no work."""
        self._idle.discard(self._agent_id)
