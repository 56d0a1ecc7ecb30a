"""``tt run``: the town as one trio program (lease, wake-ups, supervisor, agent actors).

The composition root: :class:`Runtime` builds the shared :class:`Context` and the
:class:`Supervisor` on top of it; nothing below imports this module.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import trio

from tinytown.errors import RedisUnavailableError
from tinytown.model import Message
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.runtime.context import Context, Echo
from tinytown.runtime.lease import Lease
from tinytown.runtime.supervisor import CLEANUP_DEADLINE, Supervisor
from tinytown.services.eventformat import event_text, shown
from tinytown.services.town import Town

#: Names cached by the event echo before the cache starts over (bounded memory).
NAME_CACHE = 10_000
MAIL_KEPT = 100


class Runtime:
    """One running town: shared context, supervisor, and how it is served and stopped."""

    def __init__(self, town: Town, echo: Echo | None = None, *, echo_events: bool = True) -> None:
        self.town = town
        self.context = Context(town, echo)
        self.context.on_mail = self._on_mail
        self.context.on_shutdown = self.request_shutdown
        self.echo_events = echo_events  # a REPL shows events its own way
        self.supervisor = Supervisor(self.context)
        self.shutdown_requested = trio.Event()
        self.mail: list[Message] = []  # recent supervisor mail, for front ends
        self._names: dict[str, str] = {}  # the event echo's id -> name cache

    @property
    def on_take(self) -> Callable[[str, int], None] | None:
        """Observation hook: called after each mailbox take with (agent id, count taken)."""
        return self.context.on_take

    @on_take.setter
    def on_take(self, hook: Callable[[str, int], None] | None) -> None:
        self.context.on_take = hook

    def report(self, text: str) -> None:
        self.context.report(text)

    def abort(self) -> None:
        """Stop at once (a second signal): shut down without waiting for rounds."""
        self.shutdown_requested.set()
        self.supervisor.abort()

    def request_shutdown(self, now: bool = False) -> None:
        """Stop the town as a signal would (``tt stop`` through the control queue):
        gracefully (rounds get ``runtime.shutdown_grace``), or with ``now`` at once (as
        a second signal). A request while shutting down gracefully may still say now."""
        if now:
            self.report("stop requested: stopping rounds now")
            self.abort()
        elif not self.shutdown_requested.is_set():
            self.report("stop requested")
            self.shutdown_requested.set()

    def _on_mail(self, msg: Message) -> None:
        self.mail = [*self.mail[-(MAIL_KEPT - 1) :], msg]

    async def serve(
        self, *, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the town until :attr:`shutdown_requested` is set or the caller cancels.

        On shutdown, rounds in progress get ``runtime.shutdown_grace`` seconds to finish,
        then are cancelled (their process groups killed, their messages left in flight
        for the next run); :meth:`abort` skips the grace. Cancelling ``serve`` itself
        skips the grace too. The lease is released on the way out (shielded, at most
        CLEANUP_DEADLINE seconds each step: past that the lease expires by itself).
        Raises RuntimeBusyError if the town already runs.
        """
        town, ctx = self.town, self.context
        ctx.queues.ride_out_outages()
        lease = Lease(ctx.store)
        await lease.acquire(self.report)  # also kills a crashed runtime's leftover CLIs
        try:
            # Agents' own Redis login, never the admin password (docs/security.md).
            warning = await town.access.prepare()
            if warning:
                self.report(warning)
            ctx.agent_env = {**ctx.agent_env, **town.env_for_agents()}
            await ctx.queues.forget_control()  # requests of a dead runtime
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lease.keep, 2.0)
                await nursery.start(ctx.hub.run, ctx.queues, ctx.report)
                await nursery.start(self.supervisor.run)
                if ctx.echo and self.echo_events:
                    nursery.start_soon(self._echo_events)
                await ctx.store.run_ops(
                    [ctx.store.event_op("runtime", text=f"town {town.name} is running")]
                )
                self.report(f"town {town.name} running ({self.supervisor.live_count()} agent(s))")
                task_status.started(self)
                await self.shutdown_requested.wait()
                self.report("shutting down: finishing rounds in progress")
                await self.supervisor.shutdown(ctx.setting("runtime.shutdown_grace"))
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(CLEANUP_DEADLINE) as released:
                    await lease.release()
                if released.cancelled_caught:
                    self.report("could not release the lease (Redis unreachable); it expires")
                with trio.move_on_after(2):
                    await ctx.store.run_ops(
                        [ctx.store.event_op("runtime", text=f"town {town.name} stopped")]
                    )

    async def _echo_events(self) -> None:
        """Print every event as it happens, across Redis outages (it resumes after the
        last event it printed). Names come from a cache filled only on a miss. Cancellable."""
        last = "$"
        delay = 0.05
        while True:
            try:
                async for event in self.town.messages.follow_events(since=last):
                    last = event.id
                    delay = 0.05
                    if shown(event):  # the shared format (services/eventformat.py)
                        ids = (event.agent or "", event.fields.get("sender", ""))
                        self.report(event_text(event, {i: await self._name(i) for i in ids}))
            except Exception as exc:  # an outage (or LOADING after a restart): go on
                if not isinstance(exc, RedisUnavailableError):
                    self.report(f"event echo: {type(exc).__name__}: {exc}; resuming")
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _name(self, agent_id: str) -> str:
        if not agent_id:
            return ""
        if agent_id == SUPERVISOR_ID:
            return "supervisor"
        if agent_id not in self._names:
            if len(self._names) >= NAME_CACHE:
                self._names.clear()
            found = await self.context.queues.agent_names([agent_id])
            self._names[agent_id] = found.get(agent_id, agent_id[:8])
        return self._names[agent_id]


async def run_town(
    path: str | Path = ".",
    *,
    echo: Echo | None = print,
    handle_signals: bool = True,
    on_ready: Callable[[Runtime], None] | None = None,
) -> None:
    """Host the town at ``path`` until SIGINT/SIGTERM (graceful) or cancellation.

    A first signal shuts down gracefully; a second one during that shutdown cancels every
    round at once (their process groups are killed and reaped) and returns. Signals are
    received until the town has stopped, so none ends the process with its agents'
    processes still running. Cancellation skips the grace.
    """
    town = await Town.connect(path)
    try:
        if town.started_server and echo:
            echo(f"Started the town's Redis ({town.url}).")
        runtime = Runtime(town, echo)
        async with trio.open_nursery() as nursery:
            if handle_signals:
                await nursery.start(_receive_signals, runtime)
            await nursery.start(_serve, runtime, nursery.cancel_scope)
            if on_ready:
                on_ready(runtime)
    finally:
        await town.aclose()


async def _serve(
    runtime: Runtime, done: trio.CancelScope, *, task_status: trio.TaskStatus[Runtime]
) -> None:
    """Serve; once the town has stopped, cancel ``done`` (the signal receiver)."""
    try:
        await runtime.serve(task_status=task_status)
    finally:
        done.cancel()


async def _receive_signals(runtime: Runtime, *, task_status: trio.TaskStatus[None]) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            if runtime.shutdown_requested.is_set():
                runtime.report("second signal: stopping rounds now")
                runtime.abort()
            else:
                runtime.shutdown_requested.set()
