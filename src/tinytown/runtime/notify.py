"""The notify command: ``[notify] command = "..."`` in ``tinytown.toml`` runs when an
agent asks the supervisor a question, a task fails, or an agent finishes its last task.

The runtime drives it from the town's event stream (one follower in the supervisor's
nursery), so no other part of the town knows about it:

- ``question``: a ``query`` reached the supervisor (its ``mail`` event);
- ``failed``: a task failed (a ``fail`` event);
- ``finished``: an agent that completed a task went idle after its round with nothing
  left in its inbox (a ``complete`` event, then its ``round done`` state event).

The command is split with :func:`shlex.split` and run without a shell, in the town root,
with ``TT_NOTIFY_KIND`` (question|failed|finished), ``TT_NOTIFY_AGENT`` (the agent's
name), ``TT_NOTIFY_TEXT``, ``TT_NOTIFY_TASK`` (a task id or empty), ``TT_TOWN`` and
``TT_TOWN_DIR`` added to the environment; stdin is empty, its output is captured. Each
run has ``notify.timeout`` seconds (default 10; then it is killed and reaped). At most
:data:`MAX_RUNNING` run at once and :data:`BURST` in a row, refilled one every
:data:`REFILL_SECONDS`: a storm of failures drops notifications (and says how many)
instead of forking hundreds of processes. A command that cannot start, fails, or times
out is reported as one line; the town goes on.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable

import attrs
import trio

from tinytown.errors import TinytownError
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.runtime.context import Context
from tinytown.store.events import Event

#: Notify commands running at once.
MAX_RUNNING = 2
#: Notifications allowed in a row; then one more every REFILL_SECONDS.
BURST = 5
REFILL_SECONDS = 6.0
#: Characters of text passed in TT_NOTIFY_TEXT.
TEXT_LIMIT = 1000
#: Seconds to wait before following the event stream again after it could not be read.
RETRY_DELAY = 1.0
#: With no notify command set, the stream is read at most this often (the events are
#: only looked at, nothing runs): a busy town then pays one read per interval, not one
#: per round. A command set with ``tt config`` is used from the next read.
IDLE_PACE = 1.0


@attrs.frozen
class Notification:
    kind: str  # question | failed | finished
    agent: str  # the agent's name
    text: str
    task: str = ""


@attrs.define
class RateLimit:
    """A token bucket: ``allow()`` is True for :data:`BURST` calls in a row, then once per
    ``refill`` seconds. ``dropped`` counts refusals since the last allowed call."""

    burst: int = BURST
    refill: float = REFILL_SECONDS
    clock: Callable[[], float] = trio.current_time
    tokens: float = attrs.field(init=False)
    stamp: float | None = attrs.field(init=False, default=None)
    dropped: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self.tokens = float(self.burst)

    def allow(self) -> bool:
        now = self.clock()
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) / self.refill)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.dropped += 1
        return False


class Notifier:
    """Follows the event stream and runs the notify command (see the module docstring)."""

    def __init__(self, ctx: Context, *, limit: RateLimit | None = None) -> None:
        self.ctx = ctx
        self.limit = limit or RateLimit()
        self.running = trio.CapacityLimiter(MAX_RUNNING)
        self._completed: set[str] = set()  # agents that completed a task this round
        self._bad_command: str | None = None  # the last command reported as unusable

    def command(self) -> list[str] | None:
        """The configured argv (None when none is set or it cannot be split: reported)."""
        text = str(self.ctx.config.setting("notify.command"))
        if not text.strip():
            return None
        try:
            argv = shlex.split(text)
        except ValueError as exc:
            if self._bad_command != text:
                self._bad_command = text
                self.ctx.report(f"notify: cannot split notify.command {text!r}: {exc}")
            return None
        return argv or None

    def timeout(self) -> float:
        return self.ctx.setting("notify.timeout")  # checked (> 0) when the file is loaded

    async def run(self) -> None:
        """Follow events from now on and notify, until cancelled. Runs of the command
        live in this task's nursery: cancellation kills and reaps them. Survives Redis
        going away (the follower reconnects and resumes after the last event seen)."""
        async with trio.open_nursery() as nursery:
            since = "$"
            while True:
                try:
                    async for event in self.ctx.store.events.follow(
                        since, reconnect=True, pace=self._pace
                    ):
                        since = event.id
                        for note in await self.classify(event):
                            self.submit(nursery, note)
                except (TinytownError, OSError) as exc:
                    self.ctx.report(f"notify: cannot read the event stream: {exc}")
                    await trio.sleep(RETRY_DELAY)

    def _pace(self) -> float:
        return 0.0 if self.command() is not None else IDLE_PACE

    async def classify(self, event: Event) -> list[Notification]:
        """The notifications ``event`` causes (usually none). Cancellable."""
        if self.command() is None:
            return []  # nothing to run: no look-ups on the hot path of every round
        fields = event.fields
        agent = event.agent or ""
        if event.kind == "mail" and fields.get("type") == "query":
            sender = fields.get("sender") or ""
            if sender == SUPERVISOR_ID:
                return []  # asked from the command line by a person: nobody to tell
            return [Notification("question", await self._name(sender), fields.get("text", ""))]
        if event.kind == "fail":
            task = fields.get("task", "")
            return [Notification("failed", await self._name(agent), fields.get("text", ""), task)]
        if event.kind == "complete" and agent:
            self._completed.add(agent)
            return []
        if event.kind == "state" and fields.get("verb") == "round done" and agent:
            if agent not in self._completed or fields.get("state") != "idle":
                return []
            self._completed.discard(agent)
            if await self.ctx.town.agents.inbox_len(agent):
                return []  # more work queued: not finished yet
            name = await self._name(agent)
            return [Notification("finished", name, f"{name} finished its work")]
        return []

    async def _name(self, agent_id: str) -> str:
        if not agent_id:
            return ""
        try:
            names = await self.ctx.queues.agent_names([agent_id])
        except (TinytownError, OSError):
            return agent_id
        return names.get(agent_id, agent_id)

    def submit(self, nursery: trio.Nursery, note: Notification) -> bool:
        """Start the command for ``note`` unless none is configured or the rate limit
        refuses (counted, said once runs resume). Returns whether it was started."""
        argv = self.command()
        if argv is None:
            return False
        dropped = self.limit.dropped
        if not self.limit.allow():
            return False
        if dropped:
            self.limit.dropped = 0
            self.ctx.report(f"notify: {dropped} notification(s) dropped (rate limit)")
        nursery.start_soon(self.run_one, argv, note)
        return True

    async def run_one(self, argv: list[str], note: Notification) -> None:
        """Run the command once for ``note``: killed after the timeout, always reaped;
        every failure is one report line. Cancellation kills and reaps the process."""
        env = {
            **os.environ,
            "TT_NOTIFY_KIND": note.kind,
            "TT_NOTIFY_AGENT": note.agent,
            "TT_NOTIFY_TEXT": note.text[:TEXT_LIMIT],
            "TT_NOTIFY_TASK": note.task,
            "TT_TOWN": self.ctx.town.name,
            "TT_TOWN_DIR": str(self.ctx.town.root),
        }
        timeout = self.timeout()
        async with self.running:
            try:
                with trio.move_on_after(timeout) as scope:
                    done = await trio.run_process(
                        argv,
                        env=env,
                        cwd=self.ctx.town.root,
                        stdin=subprocess.DEVNULL,
                        capture_stdout=True,
                        capture_stderr=True,
                        check=False,
                    )
            except OSError as exc:
                self.ctx.report(f"notify: cannot run {argv[0]!r}: {exc.strerror or exc}")
                return
            if scope.cancelled_caught:
                self.ctx.report(f"notify: {argv[0]} timed out after {timeout:g} s (killed)")
                return
            if done.returncode != 0:
                tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
                why = f": {tail[0][:200]}" if tail else ""
                self.ctx.report(f"notify: {argv[0]} exited {done.returncode}{why}")
