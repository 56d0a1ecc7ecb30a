"""The tools every ``tt mcp`` server offers: what an agent needs in its rounds.

Each tool calls the services (the same code paths as ``tt``: every message goes through
the same atomic delivery as ``tt send``), as the server's identity (:class:`Caller`).
Descriptions are written for a model: what the tool does, when to use it, what comes back.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from tinytown.errors import NotFoundError
from tinytown.model import Agent, Message, TaskState, converter
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.mcp.inbox import take_notes
from tinytown.services.mcp.status import snapshot
from tinytown.services.messages import make_body
from tinytown.townhall.caller import Caller, task_summary, tool_errors

StateName = Literal["pending", "assigned", "running", "completed", "failed", "cancelled"]
Kind = Literal["info", "task", "query"]

TaskId = Annotated[
    str, Field(description="The task's id (a full id, or 4 or more of its first hex digits).")
]


def message_record(message: Message, names: dict[str, str]) -> dict[str, Any]:
    return {
        "id": message.id,
        "from": names.get(message.sender, message.sender),
        "type": message.type.value,
        "text": message.text,
        "urgent": message.priority.jumps_queue,
        "sent_at": message.created_at,
        "in_reply_to": message.correlation_id,
    }


def register_agent_tools(app: MCPServer, caller: Caller, *, allow_spawn: bool) -> None:
    """Add the agent tools to ``app``; ``spawn_helper`` only with ``allow_spawn``."""
    town = caller.town

    @app.tool(
        description=(
            "Overview of the town: every agent (name, role, state, current task), how many"
            " open tasks there are in each state, and whether the town is running. Use it to"
            " find who to ask or hand work to."
        )
    )
    @tool_errors
    async def town_status() -> dict[str, Any]:
        seen = await snapshot(town.store)  # two round trips, whatever the town's size
        agents, tasks, holder = seen.agents, seen.tasks, seen.runtime
        caller.remember(agents)
        by_id = {t.id: t for t in tasks}

        def current(agent: Agent) -> dict[str, str] | None:
            task = by_id.get(agent.current_task or "")
            return {"id": task.id, "description": task.description[:200]} if task else None

        return {
            "town": town.name,
            "running": holder is not None,
            "you": caller.name,
            "agents": [
                {
                    "name": a.name,
                    "nickname": a.nickname,
                    "role": a.role_id or "worker",
                    "state": a.state.value,
                    "current_task": current(a),
                }
                for a in agents
            ],
            "open_tasks": dict(Counter(t.state.value for t in tasks if not t.state.terminal)),
        }

    @app.tool(
        description=(
            "List the town's tasks, newest last, optionally filtered by state, by tag, or to"
            " the tasks assigned to you (mine=true). Returns id, state, description, tags,"
            " assignee and result of each."
        )
    )
    @tool_errors
    async def list_tasks(
        state: Annotated[StateName | None, Field(description="Only tasks in this state.")] = None,
        tag: Annotated[str | None, Field(description="Only tasks carrying this tag.")] = None,
        mine: Annotated[bool, Field(description="Only tasks assigned to you.")] = False,
        limit: Annotated[int, Field(ge=1, le=500, description="At most this many.")] = 50,
    ) -> dict[str, Any]:
        agent = caller.need_agent("list_tasks(mine=true)").id if mine else None
        tasks = await town.tasks.list(
            state=TaskState(state) if state else None, tag=tag, agent=agent
        )
        names = await caller.names(*(t.assigned_to for t in tasks[-limit:]))
        return {
            "total": len(tasks),
            "tasks": [task_summary(t, names) for t in tasks[-limit:]],
        }

    @app.tool(
        description=(
            "Everything recorded about one task: description, state, assignee, who assigned"
            " it, result or failure reason, attempts, tags and timestamps."
        )
    )
    @tool_errors
    async def get_task(task_id: TaskId) -> dict[str, Any]:
        task = await town.tasks.resolve(task_id)
        record: dict[str, Any] = converter.unstructure(task)
        names = await caller.names(task.assigned_to, task.assigned_by)
        record["assigned_to_name"] = names.get(task.assigned_to or "")
        record["assigned_by_name"] = names.get(task.assigned_by or "")
        return record

    @app.tool(
        description=(
            "Mark one of your tasks completed, with a short summary of what you did (the"
            " agent or person who assigned it receives it). Call it once the work is done;"
            " you may only complete tasks assigned to you."
        )
    )
    @tool_errors
    async def complete_task(
        task_id: TaskId,
        result: Annotated[
            str, Field(min_length=1, description="What was done: a short summary for the assigner.")
        ],
    ) -> dict[str, Any]:
        # One atomic step checks the task is yours, finishes it, tells its assigner,
        # counts it and records the event (the service `tt task complete` uses).
        done = await town.tasks.complete(
            task_id, result, sender=caller.sender, owner=caller.agent_id
        )
        return {"id": done.id, "state": done.state.value}

    @app.tool(
        description=(
            "Mark one of your tasks failed, with the reason (the assigner receives it). Use"
            " it when the task cannot be done; you may only fail tasks assigned to you."
        )
    )
    @tool_errors
    async def fail_task(
        task_id: TaskId,
        reason: Annotated[str, Field(min_length=1, description="Why the task could not be done.")],
    ) -> dict[str, Any]:
        failed = await town.tasks.fail(task_id, reason, sender=caller.sender, owner=caller.agent_id)
        return {"id": failed.id, "state": failed.state.value}

    @app.tool(
        description=(
            "Send a message. `to` is an agent's name, `role:NAME` (every live agent with that"
            " role except you), `supervisor` (the people running the town), or `all` (every"
            " live agent). kind: `info` (an FYI, no action needed), `task` (work for the"
            " recipient), `query` (a question that expects an answer). urgent puts it ahead"
            " of the recipient's queued messages."
        )
    )
    @tool_errors
    async def send_message(
        to: Annotated[
            str, Field(min_length=1, description="Agent name, role:NAME, supervisor, or all.")
        ],
        text: Annotated[str, Field(min_length=1, description="The message text.")],
        kind: Annotated[Kind, Field(description="info, task or query.")] = "info",
        urgent: Annotated[bool, Field(description="Deliver ahead of queued messages.")] = False,
    ) -> dict[str, Any]:
        body = make_body(kind, text)
        target = to.strip()
        if target.lower() == "all":
            message, reached = await town.messages.broadcast(
                body, urgent=urgent, sender=caller.agent_id
            )
            return {"message_id": message.id, "recipients": reached}
        if target.lower().startswith("role:"):
            # each its own message, as `tt send` makes it, all delivered in one step
            sent = await town.messages.send_to_role(
                target[5:].strip(), body, urgent=urgent, sender=caller.agent_id
            )
            names = await caller.names(*(m.recipient for m in sent))
            return {
                "message_ids": [m.id for m in sent],
                "recipients": [names.get(m.recipient, m.recipient) for m in sent],
            }
        recipient = await caller.id_of(target)
        try:
            message = await town.messages.send(
                recipient, body, urgent=urgent, sender=caller.agent_id
            )
        except NotFoundError:
            if recipient == target:
                raise
            caller.forget_names()  # that agent was pruned since: resolve the name afresh
            message = await town.messages.send(target, body, urgent=urgent, sender=caller.agent_id)
        return {"message_id": message.id, "recipients": 1}

    @app.tool(
        description=(
            "Read the informational messages waiting for you (FYIs, confirmations, results"
            " of tasks you assigned), oldest first. They are acknowledged by reading: each is"
            " returned once. Your work (tasks, questions) reaches you in your prompt instead."
            " As the supervisor: the latest mail to the supervisor (kept, not removed)."
        )
    )
    @tool_errors
    async def read_inbox(
        limit: Annotated[int, Field(ge=1, le=200, description="At most this many.")] = 20,
    ) -> dict[str, Any]:
        if caller.agent is None:
            queued, _ = await town.messages.inbox(SUPERVISOR_ID)
            messages = queued[-limit:]
        else:
            messages = await take_notes(town.store, caller.agent.id, limit)
        names = await caller.names(*(m.sender for m in messages))
        return {"messages": [message_record(m, names) for m in messages]}

    @app.tool(
        description=(
            "Put a new task in the town's backlog, for whichever agent is free (it is not"
            " assigned to you). Returns the new task's id."
        )
    )
    @tool_errors
    async def backlog_add(
        description: Annotated[
            str, Field(min_length=1, description="What must be done, self-contained.")
        ],
        tags: Annotated[list[str] | None, Field(description="Labels, e.g. ['tests'].")] = None,
    ) -> dict[str, Any]:
        task = await town.backlog.add(description, tags=tags or ())
        return {"id": task.id, "state": task.state.value}

    @app.tool(
        description=(
            "Take a task waiting in the backlog: it is assigned to you and reaches you as"
            " work. Refused if someone else claimed it first."
        )
    )
    @tool_errors
    async def backlog_claim(task_id: TaskId) -> dict[str, Any]:
        agent = caller.need_agent("backlog_claim")
        task = await town.backlog.claim(task_id, agent.id, sender=agent.id)
        return {"id": task.id, "state": task.state.value, "assigned_to": agent.name}

    if allow_spawn:

        @app.tool(
            description=(
                "Start a new helper agent in the town, with you as its parent. Give it work"
                " afterwards with send_message(kind='task') or backlog_add. Only available"
                " when the town allows agents to spawn ([mcp] allow_spawn)."
            )
        )
        @tool_errors
        async def spawn_helper(
            name: Annotated[str, Field(min_length=1, description="A new, unique agent name.")],
            role: Annotated[
                str | None, Field(description="Its role, e.g. tester or reviewer.")
            ] = None,
            cli: Annotated[
                str | None, Field(description="Its CLI preset (default: the town's default).")
            ] = None,
        ) -> dict[str, Any]:
            town.config.refresh()
            if not town.config.setting("mcp.allow_spawn"):
                raise ToolError("This town does not let agents spawn ([mcp] allow_spawn = false).")
            handle = await town.spawn_agent(name, cli, role=role, parent=caller.agent_id)
            agent = await handle.state()
            return {"id": agent.id, "name": agent.name, "nickname": agent.nickname}
