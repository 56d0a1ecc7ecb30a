"""Notable events and supervisor mail, printed above the prompt as they happen.

A background trio task follows the town's event stream (blocking ``XREAD``, no polling)
and prints, in the shared event format (services/eventformat.py), the events a person at
the console cares about: mail for the supervisor (once), task outcomes, crashes, spawns,
control verbs, the runtime starting and stopping. Routine
chatter (agent-to-agent messages, rounds starting, idle/working flips) is left to
``watch`` and ``events``. While ``watch`` runs, the feed holds back so nothing prints twice.
"""

from __future__ import annotations

from collections.abc import Mapping

import trio

from tinytown.errors import TinytownError
from tinytown.repl.console import Console
from tinytown.repl.snapshot import SnapshotKeeper
from tinytown.services.eventformat import event_line, is_mail, shown
from tinytown.services.messages import Event
from tinytown.services.town import Town

#: Event kinds always shown. (A ``mail`` event repeats the ``message`` event of the same
#: mail, which is shown instead: services/eventformat.py.)
NOTABLE = frozenset(
    {
        "broadcast",
        "complete",
        "fail",
        "cancel",
        "crash",
        "requeue",
        "malformed",
        "runtime",
        "spawn",
        "prune",
    }
)
#: Agent states whose arrival is shown (idle/working flips every round: not shown).
NOTABLE_STATES = frozenset({"paused", "draining", "cold", "error", "stopped"})
#: Kinds after which the snapshot (toolbar, completion) is refreshed at once.
REFRESHING = frozenset({"spawn", "state", "prune", "runtime", "assign", "complete", "fail"})
#: Seconds to wait before following again after the stream could not be read.
RETRY_DELAY = 1.0


def is_notable(event: Event, running: bool = True) -> bool:
    """Whether the feed shows ``event``. Mail for the supervisor is shown once, as it is
    sent (whether or not a runtime hosts the town: ``running`` no longer matters)."""
    if not shown(event):
        return False
    if event.kind in NOTABLE:
        return True
    if event.kind == "state":
        return event.fields.get("state") in NOTABLE_STATES
    return is_mail(event)


def is_question(event: Event) -> bool:
    """Whether ``event`` is a question (a ``query``) reaching the supervisor."""
    return event.fields.get("type") == "query" and is_mail(event)


def feed_line(event: Event, names: Mapping[str, str]) -> str:
    """The shared event line: ``HH:MM:SS [kind] who: text``; mail reads
    ``HH:MM:SS [mail] from alice: text``."""
    return event_line(event, names)


async def stream_tail(town: Town) -> str:
    """The id of the newest event now (``0-0`` for an empty stream): following from it
    misses nothing appended afterwards. Cancellable."""
    newest = await town.messages.recent_events(1)
    return newest[-1].id if newest else "0-0"


class Feed:
    """Follows the event stream and prints notable events through the console."""

    def __init__(self, town: Town, console: Console, keeper: SnapshotKeeper) -> None:
        self.town = town
        self.console = console
        self.keeper = keeper
        self.paused = False  # set while ``watch`` prints every event itself

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Print events from now on until cancelled; survives Redis going away.

        ``task_status.started()`` is called once the stream position is taken, so events
        appended after that are all seen, each once. Cancellable at any point.
        """
        last = await self._tail()
        task_status.started()
        while True:
            try:
                async for event in self.town.messages.follow_events(since=last):
                    last = event.id
                    await self.show(event)
            except (TinytownError, OSError):
                await trio.sleep(RETRY_DELAY)

    async def _tail(self) -> str:
        try:
            return await stream_tail(self.town)
        except (TinytownError, OSError):
            return "$"

    async def show(self, event: Event) -> None:
        """Print one event if it is notable (and ``watch`` is not printing them all)."""
        snap = self.keeper.current
        if event.kind in REFRESHING:
            self.keeper.poke()
        if self.paused or not is_notable(event, snap.running):
            return
        if any(i and i not in snap.names for i in (event.agent, event.fields.get("sender"))):
            snap = await self.keeper.refresh()  # an agent spawned since the last look
        if is_question(event):  # someone waits for an answer: ring the bell, say how
            mid = event.fields.get("message_id", "")[:8]
            line = feed_line(event, snap.names).replace("[mail] query ", "[question] ", 1)
            self.console.print(f'{line}  (answer: reply {mid} "...")\a', "warning")
            return
        self.console.print(feed_line(event, snap.names), "event")
