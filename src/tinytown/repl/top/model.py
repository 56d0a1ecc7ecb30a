"""What the dashboard shows, kept live on the trio side and read lock-free by the screen.

One full read when the dashboard opens (agents, their queue counts, tasks, backlog, the
runtime lease, recent events, questions waiting). From then on it is driven by the
event stream (a blocking ``XREAD``) and the wake-up channel (pub/sub), never by polling
records: an event names its agent and task, a wake-up names the agent whose inbox grew,
and only those are read again, in batches (one ``MGET`` of the records and one pipeline
of queue lengths per batch, however many events arrived in it). The result is an
immutable :class:`View` swapped in with one assignment, which the drawing thread reads
without locking (as the REPL's snapshot).

The only timed read is the runtime lease, every :data:`LEASE_INTERVAL` seconds: a
runtime killed with ``kill -9`` writes no event, its lease just expires.
"""

from __future__ import annotations

import collections
import importlib
import time
from collections.abc import Awaitable, Callable, Iterable

import attrs
import trio

from tinytown.errors import TinytownError
from tinytown.model import Agent, Task, TaskState, Usage
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.repl.top.view import MailLine, Marks, Row, View
from tinytown.services.eventformat import event_line, is_mail, shown
from tinytown.services.messages import Event
from tinytown.services.town import Town
from tinytown.store import indexes
from tinytown.store.queues import Queues
from tinytown.store.records import Store

#: Events kept for the events pane, and mail lines for the mail pane.
EVENTS_KEPT = 200
MAIL_KEPT = 100
#: Seconds events are gathered before the agents they name are read again (the screen
#: draws at most 5 frames a second: reading more often would show nothing more).
BATCH = 0.2
#: Seconds between two reads of the runtime lease (it can expire without an event).
LEASE_INTERVAL = 3.0
#: Seconds to wait before following again after Redis could not be read.
RETRY_DELAY = 1.0
#: Event kinds after which the backlog's length is read again.
BACKLOG_KINDS = frozenset({"task", "requeue", "assign", "cancel", "complete", "fail", "prune"})


def _event_time(event: Event) -> float:
    """The event's time from its stream id (milliseconds of the server's clock)."""
    try:
        return int(event.id.split("-", 1)[0]) / 1000.0
    except ValueError:
        return time.time()


def _town_usage() -> Callable[[Store], Awaitable[Usage]] | None:
    """The read of the town's usage totals, in versions of the store that keep them."""
    try:
        module = importlib.import_module("tinytown.store.usage")
    except ImportError:
        return None
    read = getattr(module, "town_usage", None)
    return read if callable(read) else None


class Tracker:
    """Keeps :attr:`view` up to date; ``changed`` (any thread-safe callable, e.g. the
    screen's invalidate) is called after every new view."""

    def __init__(self, town: Town, changed: Callable[[], None] | None = None) -> None:
        self.town = town
        self.store = town.store
        self.changed = changed
        self.view = View(town=town.name)
        self._tasks: dict[str, TaskState] = {}
        # Events are formatted when published, with the names known then (an event may
        # name an agent spawned a moment ago); a line whose names were all known is kept.
        self._events: collections.deque[Event] = collections.deque(maxlen=EVENTS_KEPT)
        self._mail: collections.deque[Event] = collections.deque(maxlen=MAIL_KEPT)
        self._lines: dict[str, str] = {}
        # Each round's end: its ``round`` event where the runtime writes one, else its
        # ``round done`` state change (only rounds that leave the agent idle).
        self._rounds: collections.deque[float] = collections.deque(maxlen=5000)
        self._rounds_done: collections.deque[float] = collections.deque(maxlen=5000)
        self._usage = _town_usage()
        self._marks = Marks(usage=True)
        self._poked = trio.Event()
        self._last = "0-0"
        self._names: dict[str, str] = {SUPERVISOR_ID: "supervisor"}
        #: Agents read again since the dashboard opened (tests check it stays small).
        self.reads = 0

    # -- the full read ------------------------------------------------------------------

    async def load(self) -> View:
        """Read everything once (and remember the stream position first, so an event
        appended meanwhile is followed, not lost). Cancellable."""
        newest = await self.town.messages.recent_events(EVENTS_KEPT)
        self._last = newest[-1].id if newest else "0-0"
        agents = await self.town.agents.list()
        counts = await indexes.queue_counts(self.store, [a.id for a in agents])
        tasks = await self.town.tasks.list()
        self._tasks = {t.id: t.state for t in tasks}
        by_id = {t.id: t for t in tasks}
        rows = {
            a.id: Row(a, *counts.get(a.id, (0, 0)), _own(a, by_id.get(a.current_task or "")))
            for a in agents
        }
        self._names.update((a.id, a.name) for a in agents)
        for event in newest:
            self._note(event, live=False)
        self.view = attrs.evolve(
            self.view,
            loaded=True,
            stale=False,
            runtime=await self.town.runtime(),
            rows=rows,
            tasks=self._task_counts(),
            backlog=await indexes.backlog_length(self.store),
            questions=await self._questions(self._names),
            version=self.view.version + 1,
            members=self.view.members + 1,
            counts=dict(collections.Counter(a.state for a in agents)),
            agents_cost=sum(a.usage.cost_usd for a in agents),
        )
        self._marks.usage = True
        await self.refresh()  # the town's usage totals, where it keeps them
        return self.view

    # -- following ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load, then follow the event stream and wake-ups, reading again what they name,
        until cancelled. Rides out Redis going away (the view is marked stale meanwhile).
        ``task_status.started()`` once the first view is there (or could not be read)."""
        try:
            await self.load()
        except (TinytownError, OSError):
            self.view = attrs.evolve(self.view, stale=True)
            self._publish()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow)
            nursery.start_soon(self._wakeups)
            nursery.start_soon(self._lease)
            await self._refresher()

    async def _follow(self) -> None:
        while True:
            try:
                async for event in self.town.messages.follow_events(since=self._last):
                    self._last = event.id
                    self._note(event, live=True)
                    self._poked.set()
            except (TinytownError, OSError):
                await trio.sleep(RETRY_DELAY)

    async def _wakeups(self) -> None:
        queues = Queues(self.store)
        while True:
            try:
                await queues.listen(self._poked.set, self._wake)
            except (TinytownError, OSError):
                await trio.sleep(RETRY_DELAY)

    def _wake(self, payload: str) -> None:
        key = payload.partition("\n")[0]  # (a direct delivery carries its message after it)
        if key == "backlog":
            self._marks.backlog = True
        elif key in self.view.rows:
            self._marks.agents.add(key)  # its inbox or its flight grew
        self._poked.set()

    async def _lease(self) -> None:
        while True:
            await trio.sleep(LEASE_INTERVAL)
            self._marks.runtime = True
            self._poked.set()

    def _note(self, event: Event, *, live: bool) -> None:
        """Record what ``event`` says and which records it makes worth reading again."""
        fields = event.fields
        if shown(event):
            self._events.append(event)
        if is_mail(event) and event.kind != "mail":
            self._mail.append(event)
            self._marks.questions = True
        elif event.kind == "message" and fields.get("sender") == SUPERVISOR_ID:
            self._marks.questions = True  # maybe a reply: a question no longer waits
        if event.kind == "round":
            self._rounds.append(_event_time(event))
            self._marks.usage = True
        elif event.kind == "state" and fields.get("verb") == "round done":
            self._rounds_done.append(_event_time(event))
        if not live:
            return
        if event.agent and event.agent != SUPERVISOR_ID:
            self._marks.agents.add(event.agent)
        if fields.get("task"):
            self._marks.tasks.add(fields["task"])
        if event.kind in BACKLOG_KINDS:
            self._marks.backlog = True
        if event.kind == "runtime":
            self._marks.runtime = True

    async def _refresher(self) -> None:
        while True:
            await self._poked.wait()
            await trio.sleep(BATCH)  # gather the burst this event belongs to
            self._poked = trio.Event()
            try:
                await self.refresh()
            except (TinytownError, OSError):
                self.view = attrs.evolve(self.view, stale=True)
                self._publish()
                self._poked.set()
                await trio.sleep(RETRY_DELAY)

    async def refresh(self) -> View:
        """Read again what the events since the last refresh named (agents, their queue
        counts and current tasks, tasks, the backlog, questions, the lease). The marks
        are taken first, so an event noted while this reads is read by the next refresh.
        Cancellable: what was not read stays marked."""
        marks, self._marks = self._marks, Marks()
        try:
            return await self._refresh(marks)
        except BaseException:
            self._marks.add(marks)
            raise

    async def _refresh(self, marks: Marks) -> View:
        agents_ids = sorted(marks.agents)
        task_ids = set(marks.tasks)
        view = self.view
        rows = view.rows
        tasks: dict[str, Task] = {}
        changes: dict[str, object] = {}
        members = view.members
        if agents_ids:
            keys = [self.store.keys.agent(i) for i in agents_ids]
            fresh = {a.id: a for a in await self.store.mget(Agent, keys)}
            counts = await indexes.queue_counts(self.store, agents_ids)
            task_ids.update(a.current_task for a in fresh.values() if a.current_task)
            tasks = await self._read_tasks(task_ids)
            rows = dict(rows)
            states = collections.Counter(view.counts)
            spent = view.agents_cost
            for agent_id in agents_ids:
                agent = fresh.get(agent_id)
                old = rows.pop(agent_id, None)
                if old is not None:  # the totals are kept up to date, not summed again
                    states[old.agent.state] -= 1
                    spent -= old.agent.usage.cost_usd
                if agent is None:
                    members += old is not None  # pruned
                    continue
                members += old is None
                states[agent.state] += 1
                spent += agent.usage.cost_usd
                current = tasks.get(agent.current_task or "") or _task_of(old)
                rows[agent_id] = Row(agent, *counts[agent_id], _own(agent, current))
                self._names[agent_id] = agent.name
            changes.update(counts=+states, agents_cost=spent, members=members)
            self.reads += len(agents_ids)
        elif task_ids:
            tasks = await self._read_tasks(task_ids)
            rows = dict(rows)  # a task moved on: the rows holding it show that
            for agent_id, row in rows.items():
                task = tasks.get(row.agent.current_task or "")
                if task is not None:
                    rows[agent_id] = attrs.evolve(row, task=_own(row.agent, task))
        if marks.backlog:
            changes["backlog"] = await indexes.backlog_length(self.store)
        if marks.runtime:
            changes["runtime"] = await self.town.runtime()
        if marks.usage and self._usage is not None:
            usage = await self._usage(self.store)
            changes["town_cost"] = usage.cost_usd if usage.rounds or usage.cost_usd else None
        if marks.questions:
            changes["questions"] = await self._questions(self._names)
        self.view = attrs.evolve(
            self.view,
            stale=False,
            rows=rows,
            tasks=self._task_counts(),
            version=view.version + (1 if rows is not view.rows else 0),
            **changes,  # type: ignore[arg-type]
        )
        self._publish()
        return self.view

    async def _read_tasks(self, ids: Iterable[str]) -> dict[str, Task]:
        keys = [self.store.keys.task(i) for i in ids]
        tasks = {t.id: t for t in await self.store.mget(Task, keys)}
        for task in tasks.values():
            self._tasks[task.id] = task.state
        return tasks

    async def _questions(self, names: dict[str, str]) -> tuple[MailLine, ...]:
        """The questions waiting, each with how to answer it (``tt reply ID``)."""
        waiting = await self.town.messages.questions_waiting()
        return tuple(
            MailLine(
                f"reply {m.id[:8]}: {names.get(m.sender, m.sender[:8])} asks:"
                f" {' '.join(m.text.split())}",
                True,
            )
            for m in waiting
        )

    def _task_counts(self) -> dict[TaskState, int]:
        counts = collections.Counter(self._tasks.values())
        return {s: counts[s] for s in TaskState if counts[s]}

    def _line(self, event: Event) -> str:
        line = self._lines.get(event.id)
        if line is None:
            line = event_line(event, self._names)
            named = (event.agent, event.fields.get("sender"))
            if all(i is None or i in self._names for i in named):
                self._lines[event.id] = line
        return line

    def _publish(self) -> None:
        kept = {e.id for e in self._events} | {e.id for e in self._mail}
        if len(self._lines) > 2 * len(kept):
            self._lines = {i: t for i, t in self._lines.items() if i in kept}
        now = time.time()
        self.view = attrs.evolve(
            self.view,
            events=tuple(self._line(e) for e in self._events),
            mail=tuple(
                MailLine(self._line(e), e.fields.get("type") == "query") for e in self._mail
            ),
            round_times=tuple(t for t in self._rounds or self._rounds_done if now - t <= 60.0),
        )
        if self.changed is not None:
            self.changed()


def _own(agent: Agent, task: Task | None) -> Task | None:
    """The task if it is still the agent's and unfinished (as ``tt status`` shows it)."""
    if task is None or task.assigned_to != agent.id or task.state.terminal:
        return None
    return task if agent.current_task == task.id else None


def _task_of(row: Row | None) -> Task | None:
    return row.task if row is not None else None


__all__ = ["MailLine", "Row", "Tracker", "View"]  # (the view's records, from view.py)
