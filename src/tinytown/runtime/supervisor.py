"""The supervisor actor: starts, stops and restarts agent actors, answers control
requests, receives the supervisor's mail, and keeps every heartbeat fresh."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import trio

from tinytown.errors import NotFoundError, TinytownError
from tinytown.model import Agent, Message, MessageType, Pong, StatusResponse, dumps, loads, now
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.runtime.agent_actor import AgentActor
from tinytown.runtime.dispatch import Dispatcher
from tinytown.services.control import CONTROL_WAKE
from tinytown.store.records import Op
from tinytown.store.scripts import HEARTBEAT, TAKE

if TYPE_CHECKING:
    from tinytown.runtime.town_runtime import Runtime

MAIL_KEEP = 1000
REPLY_TTL = 60


class Supervisor:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.keys = rt.town.keys
        self.actors: dict[str, AgentActor] = {}
        self.actor_nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. Agent actors live in their own nursery so that one actor's
        failure is caught and restarted here, never taking the town down."""
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as actors:
                self.actor_nursery = actors
                nursery.start_soon(self._control_loop)
                nursery.start_soon(self._mail_loop)
                nursery.start_soon(self._heartbeat_loop)
                nursery.start_soon(Dispatcher(self.rt).run)
                for agent in await self.rt.town.agents.list():
                    if not agent.state.terminal:
                        self.start_actor(agent.id)
                task_status.started()
                await trio.sleep_forever()

    # -- actors ----------------------------------------------------------------------

    def start_actor(self, agent_id: str) -> None:
        if agent_id in self.actors or self.actor_nursery is None:
            return
        actor = AgentActor(self.rt, agent_id)
        self.actors[agent_id] = actor
        self.actor_nursery.start_soon(self._supervise, actor)

    async def _supervise(self, actor: AgentActor) -> None:
        """Run one actor; restart it with exponential backoff when it raises."""
        limit = int(self.rt.town.config.setting("runtime.max_restarts"))
        failures = 0
        try:
            while True:
                try:
                    await actor.run()
                    return
                except Exception as exc:  # an actor's bug must not take the town down
                    failures += 1
                    reason = f"{type(exc).__name__}: {exc}"
                    self.rt.report(f"{actor.name}: actor crashed ({reason}); restart {failures}")
                    await self.rt.store.run_ops(
                        [self.rt.store.event_op("crash", agent=actor.id, text=reason[:300])]
                    )
                    if failures > limit:
                        await self._mark_error(actor.id, f"crashed {failures} times: {reason}")
                        return
                    await trio.sleep(min(0.25 * 2 ** (failures - 1), 30.0))
                    actor.reset()
        finally:
            if self.actors.get(actor.id) is actor:
                del self.actors[actor.id]
            actor.done.set()

    async def _mark_error(self, agent_id: str, reason: str) -> None:
        with trio.CancelScope(shield=True):
            try:
                await self.rt.store.update(
                    Agent,
                    self.keys.agent(agent_id),
                    lambda a: (a.transition("error", state_reason=reason[:500]), []),
                    missing=lambda: NotFoundError(agent_id),
                )
            except TinytownError:
                pass

    async def shutdown(self, grace: float) -> None:
        """Let running rounds finish for up to ``grace`` seconds, then cancel them."""
        for actor in list(self.actors.values()):
            actor.stop()
        with trio.move_on_after(grace):
            for actor in list(self.actors.values()):
                await actor.done.wait()
        for actor in list(self.actors.values()):
            actor.cancel_scope.cancel()
        with trio.move_on_after(grace + 10):
            for actor in list(self.actors.values()):
                await actor.done.wait()

    # -- control requests ------------------------------------------------------------

    async def _control_loop(self) -> None:
        assert self.actor_nursery is not None
        while True:
            token = self.rt.hub.token(CONTROL_WAKE)
            raws = await self.rt.redis.execute("LPOP", self.keys.control, 100) or []
            for raw in raws:
                try:
                    request = json.loads(raw)
                except ValueError:
                    self.rt.report(f"skipped a malformed control request: {raw[:100]}")
                    continue
                self.actor_nursery.start_soon(self._handle_control, request)
            if not raws:
                await self.rt.hub.wait(CONTROL_WAKE, token)

    async def _handle_control(self, request: dict[str, Any]) -> None:
        verb = request.get("verb")
        agent_id = str(request.get("agent_id", ""))
        reply: dict[str, Any] = {"ok": True}
        try:
            if verb == "reconcile":
                agent = await self.rt.town.agents.get(agent_id)
                if not agent.state.terminal:
                    self.start_actor(agent_id)
            elif verb in ("interrupt", "resume", "close", "kill"):
                actor = self.actors.get(agent_id)
                if actor is None:
                    await self.rt.town.agents.apply_offline(agent_id, verb)
                elif verb == "kill":
                    await actor.kill()
                else:
                    await getattr(actor, verb)()
            elif verb == "restart":
                if agent_id in self.actors:
                    await self.actors[agent_id].done.wait()
                await self.rt.town.agents.apply_offline(agent_id, "restart")
                self.start_actor(agent_id)
            else:
                reply = {"ok": False, "error": f"Unknown control verb {verb!r}."}
        except TinytownError as exc:
            reply = {"ok": False, "error": str(exc)}
        if request.get("id") and verb != "reconcile":
            key = self.keys.reply(str(request["id"]))
            await self.rt.store.run_ops(
                [["RPUSH", key, json.dumps(reply)], ["EXPIRE", key, str(REPLY_TTL)]]
            )

    # -- supervisor mail -------------------------------------------------------------

    async def _mail_loop(self) -> None:
        """Receive messages addressed to the supervisor: answer pings, record the rest."""
        inbox, inflight = self.keys.inbox(SUPERVISOR_ID), self.keys.inflight(SUPERVISOR_ID)
        # Left in flight by an earlier runtime: handle those once, then only new mail.
        leftover = await self.rt.redis.execute("LRANGE", inflight, 0, -1)
        while True:
            token = self.rt.hub.token(SUPERVISOR_ID)
            raws, leftover = leftover, []
            raws += await self.rt.redis.run_script(TAKE, [inbox, inflight], [100])
            if not raws:
                await self.rt.hub.wait(SUPERVISOR_ID, token)
                continue
            ops: list[Op] = []
            for raw in raws:
                ops += self._mail_ops(raw)
                ops.append(["LREM", inflight, "1", raw])
            await self.rt.store.run_ops(ops)
            if len(raws) < 100:
                await self.rt.hub.wait(SUPERVISOR_ID, token)

    def _mail_ops(self, raw: str) -> list[Op]:
        try:
            msg = loads(Message, raw)
        except TinytownError as exc:
            self.rt.report(f"supervisor: skipped malformed mail: {exc}")
            return []
        if msg.type in (MessageType.PING, MessageType.STATUS_REQUEST):
            body = Pong() if msg.type is MessageType.PING else StatusResponse("running")
            return self.rt.store.deliver_ops(
                Message.new(SUPERVISOR_ID, msg.sender, body, correlation_id=msg.id)
            )
        self.rt.on_mail(msg)
        return [
            ["RPUSH", self.keys.mail, dumps(msg)],
            ["LTRIM", self.keys.mail, str(-MAIL_KEEP), "-1"],
            self.rt.store.event_op(
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
        """Every interval, refresh ``last_heartbeat`` of all live agents in one round trip."""
        interval = float(self.rt.town.config.setting("runtime.heartbeat_interval"))
        while True:
            ids = list(self.actors)
            if ids:
                await self.rt.redis.run_script(
                    HEARTBEAT, [self.keys.agent(i) for i in ids], [now()]
                )
            await trio.sleep(interval)
