"""An agent's mailbox as its actor sees it: taking, parsing, recovering, and answering
the messages the runtime handles itself.

Messages move atomically from the inbox to the in-flight list (the ``TAKE`` script) and
stay there until acknowledged, so a crash never loses one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tinytown.errors import MalformedRecordError
from tinytown.model import Message, MessageType, Pong, StatusResponse, Task, TaskState, loads
from tinytown.store.records import Op
from tinytown.store.scripts import TAKE

if TYPE_CHECKING:
    from tinytown.runtime.town_runtime import Runtime

Held = list[tuple[str, Message]]  # (raw JSON as stored, parsed message)
TAKE_BATCH = 50


class Mailbox:
    def __init__(self, rt: Runtime, agent_id: str, name: Callable[[], str]) -> None:
        self.rt = rt
        self.id = agent_id
        self.keys = rt.town.keys
        self.name = name

    async def recover(self) -> Held:
        """Messages left in flight by an earlier run; their running tasks are retried."""
        raws = await self.rt.redis.execute("LRANGE", self.keys.inflight(self.id), 0, -1)
        held = await self._parse(raws)
        for _, msg in held:
            if msg.type is MessageType.TASK_ASSIGN:
                task_id = msg.body.task_id  # type: ignore[union-attr]
                task = await self.rt.store.get(Task, self.keys.task(task_id))
                if task and task.state is TaskState.RUNNING and task.assigned_to == self.id:
                    await self.rt.town.tasks._update(
                        task_id,
                        lambda t: (
                            t.transition("retry"),
                            [self.rt.store.event_op("retry", agent=self.id, task=t.id)],
                        ),
                    )
        return held

    async def take(self) -> Held:
        """Move up to TAKE_BATCH messages into flight, oldest (or most urgent) first."""
        raws = await self.rt.redis.run_script(
            TAKE, [self.keys.inbox(self.id), self.keys.inflight(self.id)], [TAKE_BATCH]
        )
        return await self._parse(raws)

    async def _parse(self, raws: list[str]) -> Held:
        held: Held = []
        bad: list[str] = []
        for raw in raws:
            try:
                held.append((raw, loads(Message, raw)))
            except MalformedRecordError as exc:
                bad.append(raw)
                self.rt.report(f"{self.name()}: skipped a malformed message: {exc}")
        if bad:  # reported and dropped: it can never be handled
            await self.rt.store.run_ops(
                [["LREM", self.keys.inflight(self.id), "1", raw] for raw in bad]
                + [self.rt.store.event_op("malformed", agent=self.id, text=bad[0][:200])]
            )
        return held

    async def answer_runtime_messages(self, held: Held) -> Held:
        """Answer ``ping`` and ``status_request`` at once, without a CLI round."""
        answered = [
            (r, m) for r, m in held if m.type in (MessageType.PING, MessageType.STATUS_REQUEST)
        ]
        if not answered:
            return held
        status: StatusResponse | None = None
        if any(m.type is MessageType.STATUS_REQUEST for _, m in answered):
            agent = await self.rt.town.agents.get(self.id)
            status = StatusResponse(agent.state.value, agent.current_task)
        ops: list[Op] = []
        for raw, msg in answered:
            body = status if msg.type is MessageType.STATUS_REQUEST else Pong()
            reply = Message.new(self.id, msg.sender, body, correlation_id=msg.id)  # type: ignore[arg-type]
            ops += self.rt.store.deliver_ops(reply)
            ops.append(["LREM", self.keys.inflight(self.id), "1", raw])
        await self.rt.store.run_ops(ops)
        done = {id(m) for _, m in answered}
        return [(r, m) for r, m in held if id(m) not in done]
