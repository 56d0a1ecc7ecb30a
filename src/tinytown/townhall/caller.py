"""Who is calling the tools, and how a failure becomes a tool error.

A ``tt mcp`` server acts as one identity for its whole life: the agent named by
``TT_AGENT_ID`` (its tools send as that agent and touch only its own inbox and tasks),
or the supervisor (a person's AI client: no agent in the environment, or ``--http``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import attrs
import trio
from mcp.server.mcpserver.exceptions import ToolError

from tinytown.errors import ReplyLostError, TinytownError
from tinytown.model import Agent, Task
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.town import Town
from tinytown.store import indexes
from tinytown.store.client import ResponseError

#: Longest a tool call waits (mostly for Redis to come back after an outage: the server's
#: client rides outages out like the runtime's) before it answers with a tool error.
CALL_TIMEOUT = 30.0

P = ParamSpec("P")
R = TypeVar("R")


@attrs.define
class Caller:
    """The identity the server acts as, on a connected town."""

    town: Town
    agent: Agent | None = None  # None: the supervisor
    #: Agent id -> name, kept for the server's life (names never change; a new agent is
    #: looked up when first seen), so most tools do not spend a round trip on names.
    _names: dict[str, str] = attrs.field(factory=dict, init=False)

    @property
    def agent_id(self) -> str | None:
        return self.agent.id if self.agent else None

    @property
    def sender(self) -> str:
        """The id services record as the actor."""
        return self.agent.id if self.agent else SUPERVISOR_ID

    @property
    def name(self) -> str:
        return self.agent.name if self.agent else "supervisor"

    async def names(self, *ids: str | None) -> dict[str, str]:
        """Agent id -> name (and the supervisor), read again only when one of ``ids`` is
        unknown (one round trip then). Cancellable."""
        if not self._names or any(i and i not in self._names for i in ids):
            index = await indexes.agent_index(self.town.store)
            self._names = {agent_id: name for name, agent_id in index.items()}
            self._names[SUPERVISOR_ID] = "supervisor"
            for gone in ids:  # pruned since: shown by id, not looked up again
                if gone and gone not in self._names:
                    self._names[gone] = gone
        return self._names

    async def id_of(self, ref: str) -> str:
        """The id of the agent named exactly ``ref`` when the name cache knows it (no round
        trip: a send to an id checks inside its own atomic script that the agent still
        exists), else ``ref`` itself for the services to resolve."""
        wanted = ref.strip()
        for agent_id, name in self._names.items():
            if name == wanted and agent_id != SUPERVISOR_ID and agent_id != name:
                return agent_id
        return ref

    def remember(self, agents: list[Agent]) -> None:
        """Refresh the name cache from a full agent list a tool read anyway."""
        self._names = {a.id: a.name for a in agents}
        self._names[SUPERVISOR_ID] = "supervisor"

    def forget_names(self) -> None:
        self._names = {}

    def need_agent(self, tool: str) -> Agent:
        if self.agent is None:
            raise ToolError(
                f"{tool} acts for the calling agent, and this server runs as the supervisor"
                " (no TT_AGENT_ID)."
            )
        return self.agent


def tool_errors(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Run a tool under :data:`CALL_TIMEOUT` and turn Tinytown's errors into tool errors
    carrying their one sentence (the model reads it; the server never crashes on them).
    Anything else the SDK itself turns into a tool error (and logs)."""

    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with trio.fail_after(CALL_TIMEOUT):
                return await fn(*args, **kwargs)
        except ReplyLostError as exc:
            raise ToolError(f"{exc} Check the effect before trying again.") from None
        except TinytownError as exc:
            raise ToolError(str(exc)) from None
        except ResponseError as exc:
            raise ToolError(f"Redis answered with an error: {exc}.") from None
        except trio.TooSlowError:
            raise ToolError(
                f"The town's Redis did not answer within {CALL_TIMEOUT:g} s; the call may"
                " or may not have taken effect."
            ) from None

    return run


def task_summary(task: Task, names: dict[str, str]) -> dict[str, Any]:
    """A task as a model needs it in a list."""
    return {
        "id": task.id,
        "state": task.state.value,
        "description": task.description,
        "tags": list(task.tags),
        "assigned_to": names.get(task.assigned_to or "", task.assigned_to),
        "result": task.result,
    }
