"""``tt run``: the town as one trio program (lease, wake-ups, supervisor, agent actors)."""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections.abc import Callable
from pathlib import Path

import trio

from tinytown.model import Agent, Message
from tinytown.runtime.lease import Lease
from tinytown.runtime.prompt import one_line
from tinytown.runtime.supervisor import Supervisor
from tinytown.runtime.wakeups import WakeHub
from tinytown.services.town import Town

Echo = Callable[[str], None]


class Runtime:
    """What the actors of one running town share."""

    def __init__(self, town: Town, echo: Echo | None = None, *, echo_events: bool = True) -> None:
        self.town = town
        self.echo_events = echo_events  # a REPL shows events its own way
        self.store = town.store
        self.redis = town.redis
        self.hub = WakeHub()
        self.echo = echo
        self.supervisor = Supervisor(self)
        self.shutdown_requested = trio.Event()
        self.mail: list[Message] = []  # recent supervisor mail, for front ends
        self.agent_env = {**os.environ, **town.env_for_agents()}  # computed once, not per round

    def report(self, text: str) -> None:
        if self.echo:
            self.echo(f"{dt.datetime.now():%H:%M:%S} {text}")

    def on_mail(self, msg: Message) -> None:
        self.mail = [*self.mail[-99:], msg]

    def workdir(self, agent: Agent) -> Path:
        """The town root, or the agent's scope directory when it names one inside it."""
        if agent.current_scope:
            scoped = (self.town.root / agent.current_scope).resolve()
            if scoped.is_dir() and scoped.is_relative_to(self.town.root):
                return scoped
        return self.town.root

    async def serve(
        self, *, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the town until :attr:`shutdown_requested` is set or the caller cancels.

        On shutdown, rounds in progress get ``runtime.shutdown_grace`` seconds to finish,
        then are cancelled (their process groups killed, their messages left in flight
        for the next run). Cancelling ``serve`` itself skips the grace. The lease is
        released on the way out. Raises RuntimeBusyError if the town already runs.
        """
        town = self.town
        self.redis.reconnect = True  # from here on, ride out Redis outages
        lease = Lease(self.store)
        await lease.acquire()
        try:
            await self.redis.execute("DEL", town.keys.control)  # requests of a dead runtime
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lease.keep, 2.0)
                await nursery.start(self.hub.run, self.redis, town.keys.wake)
                await nursery.start(self.supervisor.run)
                if self.echo and self.echo_events:
                    nursery.start_soon(self._echo_events)
                await self.store.run_ops(
                    [self.store.event_op("runtime", text=f"town {town.name} is running")]
                )
                self.report(f"town {town.name} running ({len(self.supervisor.actors)} agent(s))")
                task_status.started(self)
                await self.shutdown_requested.wait()
                self.report("shutting down: finishing rounds in progress")
                await self.supervisor.shutdown(float(town.config.setting("runtime.shutdown_grace")))
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await lease.release()
                with trio.move_on_after(2):
                    await self.store.run_ops(
                        [self.store.event_op("runtime", text=f"town {town.name} stopped")]
                    )

    async def _echo_events(self) -> None:
        names: dict[str, str] = {}
        async for event in self.town.messages.follow_events():
            agent = event.agent or ""
            if agent and agent not in names:
                names = {a.id: a.name for a in await self.town.agents.list()}
            who = names.get(agent, "supervisor" if agent.startswith("00000000") else agent[:8])
            self.report(f"[{event.kind}] {who}: {one_line(event.text, 160)}")


async def run_town(
    path: str | Path = ".",
    *,
    echo: Echo | None = print,
    handle_signals: bool = True,
    on_ready: Callable[[Runtime], None] | None = None,
) -> None:
    """Host the town at ``path`` until SIGINT/SIGTERM (graceful) or cancellation."""
    town = await Town.connect(path)
    try:
        runtime = Runtime(town, echo)
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.serve)
            if on_ready:
                on_ready(runtime)
            if handle_signals:
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        runtime.shutdown_requested.set()
                        break
    finally:
        await town.aclose()
