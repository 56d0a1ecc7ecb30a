"""The supervisor actor: starts, stops and restarts agent actors, performs control
requests, receives the supervisor's mail, and keeps every heartbeat fresh.

It owns each agent's :class:`Supervised` slot: the lifecycle (the agent's intent, which
survives the actor's restarts), the cancel scope a kill cancels (covering the actor's
runs and the backoff between them), and the event set when supervision ends. Other
parts see only narrow interfaces: the dispatcher calls :meth:`idle_agents`,
:meth:`is_idle` and :meth:`mark_busy` (answered from an in-memory idle set the
lifecycles keep current: no Redis read); the control desk calls :meth:`perform`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from tinytown.errors import (
    InvalidTransitionError,
    NotFoundError,
    RedisUnavailableError,
    RuntimeNotRunningError,
)
from tinytown.model import Agent, Message, StatusResponse, now
from tinytown.model.control import ControlRequest, Verb
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.runtime.agent_actor import AgentActor
from tinytown.runtime.context import Context
from tinytown.runtime.control_desk import ControlDesk
from tinytown.runtime.dispatch import Dispatcher
from tinytown.runtime.idle_set import IdleSet, TrackedLifecycle
from tinytown.runtime.lifecycle import Life
from tinytown.runtime.mailbox import TAKE_BATCH, Mailbox
from tinytown.runtime.merge_queue import MergeWorker
from tinytown.runtime.notify import Notifier
from tinytown.runtime.starts import Starts
from tinytown.store import indexes
from tinytown.store.records import Op

#: Deadline of each shielded clean-up write: past it, Redis is taken to be unreachable
#: and what is left is said in a report line (the next ``tt run`` recovers it).
CLEANUP_DEADLINE = 5.0
#: Beats between two refreshes of ``last_heartbeat`` inside the agent records (the
#: heartbeat hash has every beat): 12 x the default 5 s = a minute.
RECORD_BEATS = 12


@attrs.define(eq=False)
class Supervised:
    """One agent under supervision."""

    actor: AgentActor
    life: TrackedLifecycle
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)
    kill_error: str | None = None  # why a kill could not be recorded


class Supervisor:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.keys = ctx.town.keys
        self._slots: dict[str, Supervised] = {}
        self._idle = IdleSet()  # kept current by each slot's TrackedLifecycle
        self._starts = Starts(ctx)  # actors starting together share reads and writes
        self._actor_nursery: trio.Nursery | None = None
        self.mailbox = Mailbox(ctx, SUPERVISOR_ID, lambda: "supervisor")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. Agent actors live in their own nursery and every failure
        of one is caught in :meth:`_supervise`, so one agent never takes the town down.
        Cancellation cancels every actor (their rounds' process groups are killed)."""
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as actors:
                self._actor_nursery = actors
                desk = ControlDesk(self.ctx, self.perform, self._instant)
                nursery.start_soon(self._keep_running, "control", lambda: desk.run(actors))
                for name, loop in [*self._starts.loops(), *desk.loops()]:
                    nursery.start_soon(self._keep_running, name, loop)
                nursery.start_soon(self._keep_running, "mail", self._mail_loop)
                nursery.start_soon(self._keep_running, "heartbeat", self._heartbeat_loop)
                nursery.start_soon(self._keep_running, "notify", Notifier(self.ctx).run)
                dispatcher = Dispatcher(self.ctx, self)
                nursery.start_soon(self._keep_running, "dispatch", dispatcher.run)
                nursery.start_soon(self._keep_running, "holds", dispatcher.watch_holds)
                nursery.start_soon(self._keep_running, "merges", MergeWorker(self.ctx).run)
                for agent in await self.ctx.town.agents.list():
                    if not agent.state.terminal:
                        self.start_actor(agent.id)
                task_status.started()
                await trio.sleep_forever()

    async def _keep_running(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of the supervisor's loops; if it raises (a bug, a lost reply), report it
        and start it again after a backoff, so it never takes the town down. Each loop
        recovers its own state on start (claimed requests, mail in flight)."""
        delay = 0.05
        while True:
            try:
                await loop()
                return
            except Exception as exc:
                self.ctx.report(f"supervisor: {name} loop failed ({type(exc).__name__}: {exc})")
            await trio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # -- the narrow interfaces -----------------------------------------------------------

    def live_count(self) -> int:
        return len(self._slots)

    def idle_agents(self) -> list[tuple[str, float]]:
        """(agent id, idle since) of every actor waiting with nothing to do, longest idle
        first. No I/O and no sort: the idle set is kept in that order."""
        return self._idle.items()

    def is_idle(self, agent_id: str) -> bool:
        """Whether the agent's actor waits with nothing to do (O(1), no I/O)."""
        return agent_id in self._idle

    def rounds_in_progress(self) -> list[str]:
        """Names of the agents whose CLI round runs now (paused ones included)."""
        return [slot.actor.name for slot in self._slots.values() if slot.actor.proc is not None]

    def mark_busy(self, agent_id: str) -> None:
        slot = self._slots.get(agent_id)
        if slot is not None:
            slot.life.mark_busy()

    # -- actors ----------------------------------------------------------------------

    def start_actor(self, agent_id: str) -> None:
        if agent_id in self._slots or self._actor_nursery is None:
            return
        life = TrackedLifecycle(agent_id, self._idle)
        slot = Supervised(AgentActor(self.ctx, agent_id, life, self._starts), life)
        self._slots[agent_id] = slot
        self._actor_nursery.start_soon(self._supervise, slot)

    async def _supervise(self, slot: Supervised) -> None:
        """Run one actor; restart it with exponential backoff when it raises; record a
        kill. Never raises except Cancelled (the town's own cancellation)."""
        try:
            with slot.scope:
                await self._run_with_restarts(slot)
            if slot.life.state is Life.KILLED:
                await self._record_kill(slot)
        except Exception as exc:  # a bug here must not end the other actors
            self.ctx.report(f"{slot.actor.name}: supervision failed ({type(exc).__name__}: {exc})")
        finally:
            if self._slots.get(slot.actor.id) is slot:
                del self._slots[slot.actor.id]
                slot.life.forget()
            slot.done.set()

    async def _run_with_restarts(self, slot: Supervised) -> None:
        actor, life = slot.actor, slot.life
        limit = int(self.ctx.setting("runtime.max_restarts"))
        failures = 0
        backoff = 0
        while True:
            try:
                await actor.run()
                return
            except Exception as exc:  # an actor's bug must not take the town down
                reason = f"{type(exc).__name__}: {exc}"
                outage = isinstance(exc, RedisUnavailableError)  # not the actor's fault
                failures += 0 if outage else 1
                backoff += 1
                self.ctx.report(f"{actor.name}: actor crashed ({reason}); restart {backoff}")
                await self._crash_event(actor.id, reason)
                if failures > limit:
                    await self._mark_error(actor.id, f"crashed {failures} times: {reason}")
                    return
            life.fire("restart")  # keeps a close, kill or shutdown given meanwhile
            if life.state.intent and life.state is not Life.DRAINING:
                return
            with trio.move_on_after(min(0.25 * 2 ** (backoff - 1), 30.0)):
                while not life.state.intent:
                    await life.changed()  # a close ends the wait: the actor goes cold

    async def _crash_event(self, agent_id: str, reason: str) -> None:
        try:
            await self.ctx.store.run_ops(
                [self.ctx.store.event_op("crash", agent=agent_id, text=reason[:300])]
            )
        except RedisUnavailableError:
            pass  # the report line said it; the restart matters more

    async def _mark_error(self, agent_id: str, reason: str) -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLEANUP_DEADLINE) as scope:
                try:
                    await self.ctx.store.update(
                        Agent,
                        self.keys.agent(agent_id),
                        lambda a: self._errored(a, reason),
                        missing=lambda: NotFoundError(agent_id),
                    )
                except (InvalidTransitionError, NotFoundError):
                    pass  # already terminal, or pruned
            if scope.cancelled_caught:
                self.ctx.report(
                    f"{agent_id[:8]}: could not record the error state (Redis unreachable);"
                    " the next tt run restarts the agent"
                )

    def _errored(self, agent: Agent, reason: str) -> tuple[Agent, list[Op]]:
        new = agent.transition("error", state_reason=reason[:500])
        # the state event wakes whoever waits for the agent (tt wait)
        return new, [self.ctx.town.agents.state_event(agent, new, "crashed")]

    async def _record_kill(self, slot: Supervised) -> None:
        """Record ``stopped`` and give the agent's work back, shielded so the town's own
        cancellation does not leave it half done, but never longer than the deadline."""
        actor = slot.actor
        with trio.CancelScope(shield=True):
            with trio.move_on_after(CLEANUP_DEADLINE) as scope:
                try:
                    await actor.record_kill()
                except (InvalidTransitionError, NotFoundError) as exc:
                    slot.kill_error = str(exc)
            if scope.cancelled_caught:
                slot.kill_error = "Redis did not answer in time; the kill is not recorded."
                self.ctx.report(
                    f"{actor.name}: kill not recorded (Redis unreachable); its messages stay in"
                    " flight and its tasks assigned, for the next tt run or tt recover"
                )

    async def kill(self, agent_id: str) -> None:
        """Cancel the agent's actor now (its process group is killed and reaped), record it
        ``stopped`` and requeue its work; returns when that is done. Cancellable: the kill
        then still completes in the background."""
        slot = self._slots[agent_id]
        slot.life.fire("kill")
        slot.scope.cancel()
        await slot.done.wait()
        if slot.kill_error:
            raise InvalidTransitionError(slot.kill_error)

    async def shutdown(self, grace: float) -> None:
        """Let running rounds finish for up to ``grace`` seconds, then cancel them.
        Cancellable (the caller's cancellation cancels the actors anyway)."""
        for slot in list(self._slots.values()):
            slot.life.try_fire("stop")
            self.ctx.hub.notify(slot.actor.id)
        with trio.move_on_after(grace):
            for slot in list(self._slots.values()):
                await slot.done.wait()
        for slot in list(self._slots.values()):
            slot.scope.cancel()  # the process ladder: SIGTERM, kill_grace, SIGKILL
        with trio.move_on_after(grace + 10):
            for slot in list(self._slots.values()):
                await slot.done.wait()

    def abort(self) -> None:
        """Stop every actor now (a second SIGTERM): each round's process tree gets SIGKILL
        at once (no grace) and the actors are cancelled, leaving messages in flight."""
        for slot in list(self._slots.values()):
            slot.life.try_fire("stop")
            slot.actor.kill_now()
            slot.scope.cancel()

    # -- control requests ------------------------------------------------------------

    def _instant(self, request: ControlRequest) -> bool:
        """Perform a reconcile request at once, in the control desk's loop: it only
        starts the actor (no I/O), and a batch spawn sends thousands of them."""
        if request.verb is not Verb.RECONCILE:
            return False
        self.start_actor(request.agent_id)
        return True

    async def perform(self, request: ControlRequest) -> dict[str, Any]:
        """Carry out one control request; raise a TinytownError to refuse it. Cancellable."""
        agent_id, verb = request.agent_id, request.verb
        if verb is Verb.SHUTDOWN:
            if self.ctx.on_shutdown is None:
                raise RuntimeNotRunningError("This town cannot be stopped from outside.")
            self.ctx.on_shutdown(request.now)
            grace = 0.0 if request.now else self.ctx.setting("runtime.shutdown_grace")
            return {"ok": True, "grace": grace, "rounds": self.rounds_in_progress()}
        slot = self._slots.get(agent_id)
        if verb is Verb.RESTART:
            self.ctx.refresh_config()  # `tt config` may have added the agent's CLI
        if verb is Verb.RECONCILE:
            # No read here: the actor's own start read (shared with the other actors
            # starting now) finds the agent gone or terminal and ends at once. Nothing
            # can fail between claiming the request and its effect (the slot), so it is
            # never consumed without one.
            self.start_actor(agent_id)
        elif verb is Verb.RESTART:
            if slot is not None:
                await slot.done.wait()
            await self.ctx.town.lifecycle.apply_offline(agent_id, "restart")
            self.start_actor(agent_id)
        elif slot is None:
            await self.ctx.town.lifecycle.apply_offline(agent_id, verb.value)
        elif verb is Verb.KILL:
            await self.kill(agent_id)
        elif verb is Verb.INTERRUPT:
            await slot.actor.interrupt()
        elif verb is Verb.RESUME:
            await slot.actor.resume()
        elif verb is Verb.CLOSE:
            await slot.actor.close()
        return {"ok": True}

    # -- supervisor mail -------------------------------------------------------------

    async def _mail_loop(self) -> None:
        """Receive messages addressed to the supervisor through the same :class:`Mailbox`
        as agents: answer pings, record the rest. Cancellable; unacknowledged mail stays
        in flight and is handled by the next run."""
        self.mailbox = Mailbox(self.ctx, SUPERVISOR_ID, lambda: "supervisor")  # forget all
        held = await self.mailbox.recover()
        while True:
            token = self.ctx.hub.token(SUPERVISOR_ID)
            taken = await self.mailbox.take()
            held = await self.mailbox.answer_runtime_messages(held + taken, _running)
            if held:  # the whole batch filed and acknowledged in one script call
                ops: list[Op] = []
                for raw, msg in held:
                    ops += self._mail_ops(raw, msg)
                ops.append(self.ctx.queues.mail_trim_op())
                await self.mailbox.ack(held, ops)
                for _, msg in held:
                    if self.ctx.on_mail:
                        self.ctx.on_mail(msg)
                held = []
            if len(taken) < TAKE_BATCH:
                await self.ctx.hub.wait(SUPERVISOR_ID, token)

    def _mail_ops(self, raw: str, msg: Message) -> list[Op]:
        return [
            self.ctx.queues.mail_push_op(raw),
            self.ctx.store.event_op(
                "mail",
                agent=SUPERVISOR_ID,
                sender=msg.sender,
                type=msg.type.value,
                text=msg.text[:300],
                message_id=msg.id,
            ),
        ]

    # -- heartbeats ------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Every interval, beat for all live agents in one round trip: the heartbeat hash
        (``indexes.beat``: one HSET, no record rewritten). Every RECORD_BEATS-th beat also
        refreshes ``last_heartbeat`` inside each agent's record (a rewrite of every
        record: at 10,000 agents that was most of redis-server's idle CPU). Cancellable."""
        interval = self.ctx.setting("runtime.heartbeat_interval")
        beats = 0
        while True:
            ids, stamp = list(self._slots), now()
            try:
                await indexes.beat(self.ctx.store, ids, stamp)
                if beats % RECORD_BEATS == 0:
                    await self.ctx.queues.heartbeat(ids, stamp)
            except RedisUnavailableError:
                pass  # a lost reply (the stamps may be written): the next beat refreshes them
            beats += 1
            await trio.sleep(interval)


async def _running() -> StatusResponse:
    return StatusResponse("running")
