"""Supervisor-level tools: for a person's AI client (``tt mcp --http``, or stdio without an
agent identity), never for an agent. They do what ``tt assign``, ``tt interrupt|resume|
close|kill`` and ``tt send --all`` do, through the same services (a running town applies
the control verbs through its control queue; a stopped one has their effect recorded)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from pydantic import Field

from tinytown.services.lifecycle import ControlOutcome
from tinytown.services.messages import make_body
from tinytown.townhall.caller import Caller, tool_errors

AgentRef = Annotated[
    str, Field(min_length=1, description="The agent's name, nickname, id or id prefix.")
]


def _outcome(result: ControlOutcome) -> dict[str, Any]:
    return {
        "agent": result.agent.name,
        "state": result.agent.state.value,
        "applied_by_running_town": result.live,
        "detail": result.detail,
    }


def register_supervisor_tools(app: MCPServer, caller: Caller) -> None:
    town = caller.town

    @app.tool(
        description=(
            "Create a task and assign it to an agent (it receives it as work at once). With"
            " anyone=true the task goes to the backlog when that agent cannot take work."
            " Returns the task id."
        )
    )
    @tool_errors
    async def assign(
        agent: AgentRef,
        description: Annotated[
            str, Field(min_length=1, description="What must be done, self-contained.")
        ],
        tags: Annotated[list[str] | None, Field(description="Labels for the task.")] = None,
        anyone: Annotated[
            bool, Field(description="Backlog it if the agent takes no work.")
        ] = False,
    ) -> dict[str, Any]:
        task = await town.tasks.assign(
            agent, description, sender=caller.sender, tags=tags or (), anyone=anyone
        )
        return {"id": task.id, "state": task.state.value}

    @app.tool(
        description=(
            "Pause an agent now: its running CLI is suspended and it takes no new messages"
            " until resume."
        )
    )
    @tool_errors
    async def interrupt(agent: AgentRef) -> dict[str, Any]:
        return _outcome(await town.lifecycle.interrupt(agent))

    @app.tool(description="Continue a paused agent (its CLI resumes; it takes messages again).")
    @tool_errors
    async def resume(agent: AgentRef) -> dict[str, Any]:
        return _outcome(await town.lifecycle.resume(agent))

    @app.tool(
        description=(
            "Drain an agent: it takes no new messages, its current round finishes, then it"
            " goes cold."
        )
    )
    @tool_errors
    async def close(agent: AgentRef) -> dict[str, Any]:
        return _outcome(await town.lifecycle.close(agent))

    @app.tool(
        description=(
            "Stop an agent now: its CLI's processes are terminated and its unfinished work"
            " goes back to the backlog."
        )
    )
    @tool_errors
    async def kill(agent: AgentRef) -> dict[str, Any]:
        return _outcome(await town.lifecycle.kill(agent))

    @app.tool(
        description=(
            "Send one message to every live agent at once (all or none). kind: info (FYI),"
            " task (work for each) or query (a question)."
        )
    )
    @tool_errors
    async def broadcast(
        text: Annotated[str, Field(min_length=1, description="The message text.")],
        kind: Annotated[
            Literal["info", "task", "query"], Field(description="info, task or query.")
        ] = "info",
        urgent: Annotated[bool, Field(description="Deliver ahead of queued messages.")] = False,
    ) -> dict[str, Any]:
        message, reached = await town.messages.broadcast(
            make_body(kind, text), urgent=urgent, sender=caller.agent_id
        )
        return {"message_id": message.id, "recipients": reached}
