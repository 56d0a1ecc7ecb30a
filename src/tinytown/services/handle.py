"""``AgentHandle``: the Python API's grip on one agent (spec section 8)."""

from __future__ import annotations

from typing import Any

from tinytown.model import Agent, MessageType, Usage
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.model.message import BODY_CLASSES, TaskBody
from tinytown.services.agents import AgentService
from tinytown.services.costs import KEEP, CostService, Keep
from tinytown.services.lifecycle import AgentLifecycle
from tinytown.services.messages import MessageService
from tinytown.services.tasks import TaskService


class AgentHandle:
    """One agent of a connected town, by id. ``sender`` is who acts through the handle
    (an agent id; the supervisor by default)."""

    def __init__(
        self,
        agent_id: str,
        *,
        agents: AgentService,
        tasks: TaskService,
        messages: MessageService,
        lifecycle: AgentLifecycle,
        costs: CostService,
        sender: str = SUPERVISOR_ID,
    ) -> None:
        self.id = agent_id
        self.sender = sender
        self._agents = agents
        self._tasks = tasks
        self._messages = messages
        self._lifecycle = lifecycle
        self._costs = costs

    async def assign(self, task: Any, *, anyone: bool = False) -> str:
        """Assign a :class:`~tinytown.model.Task` (or a description); returns the task id.

        A cold, stopped or error agent is refused (InvalidTransitionError); with
        ``anyone`` the task goes to the backlog instead."""
        description = task if isinstance(task, str) else task.description
        tags = () if isinstance(task, str) else task.tags
        max_attempts = None if isinstance(task, str) else task.max_attempts
        created = await self._tasks.assign(
            self.id,
            description,
            tags=tags,
            sender=self.sender,
            anyone=anyone,
            max_attempts=max_attempts,
        )
        return created.id

    async def send(self, body: Any, *, urgent: bool = False) -> str:
        """Send a message body, a :class:`MessageType` without fields, or text (a task)."""
        if isinstance(body, MessageType):
            body = BODY_CLASSES[body]()
        elif isinstance(body, str):
            body = TaskBody(body)
        sender = None if self.sender == SUPERVISOR_ID else self.sender
        message = await self._messages.send(self.id, body, urgent=urgent, sender=sender)
        return message.id

    async def inbox_len(self) -> int:
        return await self._agents.inbox_len(self.id)

    async def state(self) -> Agent:
        return await self._agents.get(self.id)

    async def usage(self) -> Usage:
        """What its rounds cost so far (running totals). Cancellable (reads only)."""
        return (await self._agents.get(self.id)).usage

    async def set_budget(
        self, *, usd: float | Keep | None = KEEP, tokens: int | Keep | None = KEEP
    ) -> Agent:
        """Set its own spending limit (None removes a measure, an omitted one stays); the
        town's ``[budget]`` applies besides it. A paused agent stays paused: call
        :meth:`resume`. Raises InvalidInputError (nothing changes). Cancellable: once the
        write was sent, a cancelled call may or may not have happened."""
        return await self._costs.set_agent_budget(self.id, usd=usd, tokens=tokens)

    async def interrupt(self) -> Agent:
        return (await self._lifecycle.interrupt(self.id)).agent

    async def resume(self) -> Agent:
        return (await self._lifecycle.resume(self.id)).agent

    async def close(self) -> Agent:
        return (await self._lifecycle.close(self.id)).agent

    async def kill(self) -> Agent:
        return (await self._lifecycle.kill(self.id)).agent

    async def restart(self) -> Agent:
        return (await self._lifecycle.restart(self.id)).agent

    async def wait(self, timeout: float | None = None, *, idle: bool = False) -> Agent:
        """Block until terminal (or idle with an empty inbox). Raises TimeoutExpiredError
        after ``timeout`` seconds (InvalidInputError if negative). Cancellable."""
        return await self._agents.wait(self.id, timeout=timeout, idle=idle)
