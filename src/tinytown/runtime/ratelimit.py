"""Town-wide holds on an agent CLI after a rate limit: no round of that CLI starts, and
the dispatcher gives its agents no backlog work, until the reset time the CLI named (or
an exponential backoff from ``runtime.rate_limit_backoff``, doubling up to an hour).

In memory, in the runtime: a hold outlives no runtime (a restarted town tries again,
and the CLI says again when it is still limited)."""

from __future__ import annotations

import datetime as dt
import time

import trio

MAX_BACKOFF = 3600.0


class CliHolds:
    """The hold on each CLI (by preset name), with its backoff level."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}  # CLI -> trio time the hold ends
        self._level: dict[str, int] = {}  # CLI -> rate limits in a row without a reset time
        self._changed = trio.Event()

    def hold(self, cli: str, retry_after: float | None, backoff: float) -> float:
        """Hold ``cli`` for ``retry_after`` seconds, or else for ``backoff`` doubling with
        each rate limit in a row; a longer hold already in force stays. Returns the
        seconds from now until the hold ends."""
        if retry_after is not None and retry_after >= 0:
            delay = float(retry_after)
        else:
            level = self._level.get(cli, 0)
            self._level[cli] = level + 1
            delay = min(backoff * 2.0**level, MAX_BACKOFF)
        now = trio.current_time()
        until = max(self._until.get(cli, now), now + delay)
        self._until[cli] = until
        self._changed.set()
        self._changed = trio.Event()
        return until - now

    def succeeded(self, cli: str) -> None:
        """A round of ``cli`` went through: the next backoff starts from the base again."""
        self._level.pop(cli, None)

    def remaining(self, cli: str) -> float:
        """Seconds until the hold on ``cli`` ends (0: not held)."""
        until = self._until.get(cli)
        if until is None:
            return 0.0
        left = until - trio.current_time()
        if left <= 0:
            del self._until[cli]
            return 0.0
        return left

    def held(self) -> set[str]:
        """The CLIs held now."""
        return {cli for cli in list(self._until) if self.remaining(cli) > 0}

    def next_end(self) -> float | None:
        """The trio time the first hold in force ends, or None."""
        self.held()  # drops the ended ones
        return min(self._until.values(), default=None)

    async def changed(self) -> None:
        """Return when a hold is set or extended. Cancellable."""
        await self._changed.wait()


def clock_time(seconds_from_now: float) -> str:
    """``HH:MM:SS`` local wall-clock time that many seconds from now (for state reasons)."""
    stamp = dt.datetime.fromtimestamp(time.time() + seconds_from_now)
    return stamp.strftime("%H:%M:%S")


def iso_time(seconds_from_now: float) -> str:
    """UTC ISO time that many seconds from now (for events)."""
    stamp = dt.datetime.fromtimestamp(time.time() + seconds_from_now, dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
