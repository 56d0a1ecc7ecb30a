"""Requests from any ``tt`` process to the running town, answered through Redis."""

from __future__ import annotations

import json
from typing import Any

import attrs

from tinytown.errors import TimeoutExpiredError
from tinytown.model import new_id
from tinytown.store.records import Store

#: How long a command waits for the runtime to answer a control request.
REPLY_TIMEOUT = 10.0
CONTROL_WAKE = "control"


@attrs.frozen
class LeaseHolder:
    """Who runs the town: parsed from the runtime lease."""

    id: str
    host: str
    pid: int
    started_at: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (since {self.started_at})"


async def runtime_holder(store: Store) -> LeaseHolder | None:
    """The live runtime's lease, or None when the town is not running."""
    raw = await store.redis.execute("GET", store.keys.runtime)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return LeaseHolder(str(data["id"]), str(data["host"]), int(data["pid"]), data["started"])
    except (ValueError, KeyError, TypeError):
        return LeaseHolder("?", "unknown", 0, "?")


async def request(store: Store, verb: str, timeout: float = REPLY_TIMEOUT, **args: Any) -> dict:
    """Ask the runtime to perform ``verb`` and wait for its answer.

    Returns the reply (``{"ok": bool, "error": str | None, ...}``). Raises
    TimeoutExpiredError if no answer comes in ``timeout`` seconds. Cancellable: the
    request may then still be carried out by the runtime.
    """
    request_id = new_id()
    payload = json.dumps({"id": request_id, "verb": verb, **args})
    await store.run_ops(
        [["RPUSH", store.keys.control, payload], ["PUBLISH", store.keys.wake, CONTROL_WAKE]]
    )
    reply_key = store.keys.reply(request_id)
    async with store.redis.dedicated() as conn:
        reply = await conn.execute("BLPOP", reply_key, timeout)
    if reply is None:
        raise TimeoutExpiredError(
            f"The running town did not answer the {verb} request within {timeout:g} s."
        )
    return json.loads(reply[1])


async def notify(store: Store, verb: str, **args: Any) -> None:
    """Tell the runtime something changed, without waiting (a no-op if none runs)."""
    payload = json.dumps({"id": new_id(), "verb": verb, **args})
    await store.run_ops(
        [["RPUSH", store.keys.control, payload], ["PUBLISH", store.keys.wake, CONTROL_WAKE]]
    )
