"""Resources a model may read for context: the caller's current tasks, recent events."""

from __future__ import annotations

import json

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError

from tinytown.errors import TinytownError
from tinytown.model import converter
from tinytown.services.eventformat import event_line, shown
from tinytown.townhall.caller import Caller

TASKS_URI = "tinytown://tasks/current"
EVENTS_URI = "tinytown://events/recent"
#: Events the recent-events resource shows.
RECENT_EVENTS = 50


def register_resources(app: MCPServer, caller: Caller) -> None:
    town = caller.town

    @app.resource(
        TASKS_URI,
        name="current-tasks",
        description=(
            "Your unfinished tasks (assigned or running), as JSON records; for the supervisor,"
            " every unfinished task in the town."
        ),
        mime_type="application/json",
    )
    async def current_tasks() -> str:
        try:
            tasks = await town.tasks.list(agent=caller.agent_id)
        except TinytownError as exc:
            raise ResourceError(str(exc)) from None
        open_tasks = [converter.unstructure(t) for t in tasks if not t.state.terminal]
        return json.dumps({"agent": caller.name, "tasks": open_tasks}, indent=1)

    @app.resource(
        EVENTS_URI,
        name="recent-events",
        description=(
            f"The town's last {RECENT_EVENTS} events, oldest first, one per line"
            " (time, kind, agent, what happened): assignments, messages, finished tasks,"
            " state changes."
        ),
        mime_type="text/plain",
    )
    async def recent_events() -> str:
        try:
            events = await town.messages.recent_events(RECENT_EVENTS)
            names = await caller.names(*(e.agent for e in events))
        except TinytownError as exc:
            raise ResourceError(str(exc)) from None
        lines = [event_line(e, names) for e in events if shown(e)]
        return "\n".join(lines) + "\n" if lines else "(no events yet)\n"
