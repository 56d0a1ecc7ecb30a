"""An agent actor's lifecycle: one explicit state and the table of its transitions.

The state lives in the supervisor (one :class:`Lifecycle` per supervised agent) and
outlives each run of the actor, so an intent (``close``, ``kill``, town shutdown) given
while the actor is crashing or backing off survives its restart. The agent *record* in
Redis has its own state machine (model/agent.py); this one is what the runtime intends
and is doing, and it is checked before the record is written.
"""

from __future__ import annotations

import enum

import trio

from tinytown.errors import InvalidTransitionError


class Life(enum.Enum):
    STARTING = "starting"  # a run begins: recovering what is in flight
    IDLE = "idle"  # takes messages, no round
    ROUND = "round"  # a CLI round runs
    PAUSED = "paused"  # takes nothing, no round
    PAUSED_ROUND = "paused_round"  # a round whose process group is suspended
    DRAINING = "draining"  # close: the current round (if any) finishes, then cold
    STOPPING = "stopping"  # town shutdown: the current round may finish; record stays live
    KILLED = "killed"  # kill: cancelled at once; recorded stopped, work requeued

    @property
    def intent(self) -> bool:
        """A final intent: no new round starts and no restart undoes it."""
        return self in (Life.DRAINING, Life.STOPPING, Life.KILLED)


L = Life
_ACTIVE = {L.STARTING, L.IDLE, L.ROUND, L.PAUSED, L.PAUSED_ROUND}
_KEEP_INTENT = {L.DRAINING: L.DRAINING, L.STOPPING: L.STOPPING, L.KILLED: L.KILLED}

#: event -> {from: to}. An event absent for the current state is refused.
TRANSITIONS: dict[str, dict[Life, Life]] = {
    "ready": {L.STARTING: L.IDLE},
    "interrupt": {
        L.STARTING: L.PAUSED,
        L.IDLE: L.PAUSED,
        L.PAUSED: L.PAUSED,
        L.ROUND: L.PAUSED_ROUND,
        L.PAUSED_ROUND: L.PAUSED_ROUND,
    },
    "resume": {L.PAUSED: L.IDLE, L.PAUSED_ROUND: L.ROUND},
    "close": {**{s: L.DRAINING for s in _ACTIVE}, L.DRAINING: L.DRAINING},
    "begin_round": {L.IDLE: L.ROUND},
    "end_round": {L.ROUND: L.IDLE, L.PAUSED_ROUND: L.PAUSED, **_KEEP_INTENT},
    "stop": {**{s: L.STOPPING for s in _ACTIVE}, **_KEEP_INTENT},
    "kill": {**{s: L.KILLED for s in _ACTIVE}, L.DRAINING: L.KILLED, L.STOPPING: L.KILLED},
    "restart": {**{s: L.STARTING for s in _ACTIVE}, **_KEEP_INTENT},
}


class Lifecycle:
    """The state of one supervised agent, plus when it last became idle (for dispatch)."""

    def __init__(self, state: Life = Life.STARTING) -> None:
        self.state = state
        self.idle_since: float | None = None  # waiting with nothing to do
        self._changed = trio.Event()

    def can(self, event: str) -> bool:
        return self.state in TRANSITIONS[event]

    def fire(self, event: str) -> Life:
        """Apply ``event``; raise InvalidTransitionError if the current state refuses it."""
        target = TRANSITIONS[event].get(self.state)
        if target is None:
            raise InvalidTransitionError(
                f"Cannot {event.replace('_', ' ')} an agent that is {self.state.value}."
            )
        if target is not self.state:
            self.state = target
            if target is not Life.IDLE:
                self.idle_since = None
            self._changed.set()
            self._changed = trio.Event()
        return target

    def try_fire(self, event: str) -> bool:
        """Apply ``event`` if allowed; return whether it was."""
        if not self.can(event):
            return False
        self.fire(event)
        return True

    def mark_idle(self) -> bool:
        """Note that the actor waits with nothing to do; True if it just became so."""
        if self.state is not Life.IDLE or self.idle_since is not None:
            return False
        self.idle_since = trio.current_time()
        return True

    def mark_busy(self) -> None:
        self.idle_since = None

    async def changed(self) -> None:
        """Return at the next state change. Cancellable."""
        await self._changed.wait()
