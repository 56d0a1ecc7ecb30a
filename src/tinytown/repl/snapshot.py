"""What the prompt thread knows about the town: refreshed on the trio side, read lock-free.

The completer and the toolbar run in the prompt thread and must never touch Redis (the
connection belongs to trio). The trio side builds an immutable :class:`Snapshot` every few
seconds, after every command and after notable events, and swaps it in with one attribute
assignment, which the prompt thread reads without locking.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import trio

from tinytown.errors import TinytownError
from tinytown.model import Agent, AgentState, Task
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.config import TownConfig
from tinytown.services.control import LeaseHolder
from tinytown.services.town import Town

#: Seconds between refreshes when nothing asks for one sooner.
REFRESH_INTERVAL = 3.0


@attrs.frozen
class Snapshot:
    """The town as last seen: agents, unfinished tasks, who runs it, and its CLI presets
    (name, command), built-ins and ``[agent_clis.*]`` of ``tinytown.toml`` as last read."""

    town: str = ""
    clis: tuple[tuple[str, str], ...] = ()
    agents: tuple[Agent, ...] = ()
    open_tasks: tuple[Task, ...] = ()
    runtime: LeaseHolder | None = None
    loaded: bool = False
    stale: bool = False  # the last refresh failed (Redis away)

    @property
    def running(self) -> bool:
        return self.runtime is not None

    @property
    def names(self) -> dict[str, str]:
        """Agent id -> name (the supervisor included)."""
        out = {a.id: a.name for a in self.agents}
        out[SUPERVISOR_ID] = "supervisor"
        return out

    def counts(self) -> dict[AgentState, int]:
        """Agents per state, in the enum's order, states without agents left out."""
        out: dict[AgentState, int] = {}
        for state in AgentState:
            n = sum(1 for a in self.agents if a.state is state)
            if n:
                out[state] = n
        return out


async def take_snapshot(town: Town) -> Snapshot:
    """Read the town's agents, unfinished tasks, runtime lease and CLI presets (from
    ``tinytown.toml`` as it is now: ``tt config`` may have added one). Cancellable."""
    agents = await town.agents.list()
    tasks = await town.tasks.list()
    holder = await town.runtime()
    return Snapshot(
        town=town.name,
        clis=tuple(sorted(_clis(town).items())),
        agents=tuple(agents),
        open_tasks=tuple(t for t in tasks if not t.state.terminal),
        runtime=holder,
        loaded=True,
    )


def _clis(town: Town) -> dict[str, str]:
    """The presets of the town's config file as it is now; those loaded at connect time if
    it cannot be read (a half-edited file must not stop the snapshot)."""
    try:
        return TownConfig.load(town.root, check=False).clis()
    except (TinytownError, OSError):
        return town.config.clis()


class SnapshotKeeper:
    """Keeps :attr:`current` fresh; :meth:`poke` asks for a refresh now."""

    def __init__(self, town: Town, interval: float = REFRESH_INTERVAL) -> None:
        self.town = town
        self.interval = interval
        self.current = Snapshot(town=town.name)
        self._poked = trio.Event()

    def poke(self) -> None:
        """Refresh as soon as possible (callable from trio only)."""
        self._poked.set()

    async def refresh(self) -> Snapshot:
        """Refresh now; on a Redis or record error keep the old snapshot, marked stale."""
        try:
            self.current = await take_snapshot(self.town)
        except (TinytownError, OSError):
            self.current = attrs.evolve(self.current, stale=True)
        return self.current

    async def run(self, changed: Callable[[], None] | None = None) -> None:
        """Refresh every :attr:`interval` seconds or when poked, until cancelled.

        ``changed`` (optional) is called after each refresh, e.g. to redraw the
        toolbar. Cancellation may interrupt a refresh midway; the old snapshot then stays.
        """
        while True:
            await self.refresh()
            if changed is not None:
                changed()
            with trio.move_on_after(self.interval if self.interval > 0 else math.inf):
                await self._poked.wait()
            self._poked = trio.Event()
