"""Control requests: what ``tt kill``/``close``/... ask of the running town, typed.

A request travels as JSON through ``tt:<town>:control``. The runtime parses every entry
with :func:`parse_request`; anything malformed is refused with one sentence (and, when
its id can be read, an error reply), never acted on half-read.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs

from tinytown.errors import InvalidInputError
from tinytown.model.ids import SUPERVISOR_ID, is_uuid


class Verb(enum.Enum):
    INTERRUPT = "interrupt"
    RESUME = "resume"
    CLOSE = "close"
    KILL = "kill"
    RESTART = "restart"
    #: Sent by ``tt spawn``/``restart`` without waiting: "look at this agent's record".
    RECONCILE = "reconcile"
    #: ``tt stop`` / ``tt down``: the whole town shuts down (``now``: rounds are cancelled
    #: at once, as on a second signal). Addressed to the supervisor, not an agent.
    SHUTDOWN = "shutdown"

    @property
    def town_wide(self) -> bool:
        """A verb for the town itself: it names no agent."""
        return self is Verb.SHUTDOWN


@attrs.frozen
class ControlRequest:
    """One parsed control request."""

    verb: Verb
    agent_id: str  # the supervisor's id for a town-wide verb
    id: str | None = None
    #: ``shutdown`` only: skip the grace (cancel rounds in progress at once).
    now: bool = False

    @property
    def wants_reply(self) -> bool:
        """Whether a command waits for the answer (``reconcile`` is fire-and-forget)."""
        return self.id is not None and self.verb is not Verb.RECONCILE


def parse_request(raw: str) -> ControlRequest:
    """Read one control entry. Raises InvalidInputError naming what is wrong."""
    data = _object(raw)
    verb = data.get("verb")
    if not isinstance(verb, str) or not verb:
        raise InvalidInputError("Control request has no verb.")
    try:
        parsed = Verb(verb)
    except ValueError:
        raise InvalidInputError(f"Unknown control verb {verb[:40]!r}.") from None
    now = data.get("now", False)
    if not isinstance(now, bool):
        raise InvalidInputError(f"Control request {verb} has a 'now' that is not true/false.")
    if parsed.town_wide:
        if data.get("agent_id", SUPERVISOR_ID) != SUPERVISOR_ID:
            raise InvalidInputError(f"Control request {verb} is for the town, not an agent.")
        return ControlRequest(parsed, SUPERVISOR_ID, request_id(raw), now=now)
    agent_id = data.get("agent_id")
    if not isinstance(agent_id, str) or not is_uuid(agent_id):
        raise InvalidInputError(f"Control request {verb} has no valid agent id.")
    return ControlRequest(parsed, agent_id, request_id(raw))


def request_id(raw: str) -> str | None:
    """The request's id if one can be read (so even a malformed request gets a reply)."""
    try:
        data = _object(raw)
    except InvalidInputError:
        return None
    rid = data.get("id")
    # Ids become part of a key name: accept only what ``new_id`` makes.
    return rid if isinstance(rid, str) and is_uuid(rid) else None


def _object(raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidInputError(f"Control request is not JSON: {raw[:80]!r}.") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"Control request is not a JSON object: {raw[:80]!r}.")
    return data
