"""Requests from any ``tt`` process to the running town, answered through Redis."""

from __future__ import annotations

import json
from typing import Any

import attrs
import trio

from tinytown.errors import RuntimeNotRunningError, TimeoutExpiredError
from tinytown.model import new_id
from tinytown.services.localproc import is_local, is_running
from tinytown.store.records import Store
from tinytown.store.replies import reply_waiter

#: How long a command waits for the runtime to answer a control request.
REPLY_TIMEOUT = 10.0
#: While waiting for a reply, how often to check that the runtime is still alive.
REPLY_SLICE = 0.5
CONTROL_WAKE = "control"
#: Requests per RPUSH in :func:`notify_ops`.
NOTIFY_SLICE = 1000


@attrs.frozen
class LeaseHolder:
    """Who runs the town: parsed from the runtime lease (``corrupt``: it could not be)."""

    id: str
    host: str
    pid: int
    started_at: str
    boot_id: str = ""
    corrupt: bool = False

    def describe(self) -> str:
        if self.corrupt:
            return "an unreadable runtime lease (clear it with 'tt down --force')"
        return f"pid {self.pid} on {self.host} (since {self.started_at})"

    def dead_here(self) -> bool:
        """The holder was a process on this host and boot that no longer runs."""
        return not self.corrupt and is_local(self.host, self.boot_id) and not is_running(self.pid)


def parse_lease(raw: str) -> LeaseHolder:
    """The holder a lease value names; a value that is not a lease gives ``corrupt``."""
    try:
        data = json.loads(raw)
        return LeaseHolder(
            str(data["id"]),
            str(data["host"]),
            int(data["pid"]),
            str(data["started"]),
            str(data.get("boot", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return LeaseHolder("?", "unknown", 0, "?", corrupt=True)


async def runtime_holder(store: Store) -> LeaseHolder | None:
    """The live runtime's lease, or None when the town is not running.

    A lease whose holder was a process on this host (same boot) that is gone counts as
    not running at once, without waiting for its expiry. Cancellable.
    """
    raw = await store.get_raw(store.keys.runtime)
    if not raw:
        return None
    holder = parse_lease(raw)
    return None if holder.dead_here() else holder


async def request(store: Store, verb: str, timeout: float = REPLY_TIMEOUT, **args: Any) -> dict:
    """Ask the runtime to perform ``verb`` and wait for its answer.

    Returns the reply (``{"ok": bool, "error": str | None, ...}``). The reply is awaited in
    slices of ``REPLY_SLICE`` s; between slices the runtime's liveness is checked, so a
    runtime that died fails the request within about a second (RuntimeNotRunningError)
    instead of after the whole timeout. Raises TimeoutExpiredError if no answer comes in
    ``timeout`` seconds. Cancellable: the request may then still be carried out by the
    runtime.
    """
    request_id = new_id()
    payload = json.dumps({"id": request_id, "verb": verb, **args})
    await store.run_ops(
        [["RPUSH", store.keys.control, payload], ["PUBLISH", store.keys.wake, CONTROL_WAKE]]
    )
    deadline = trio.current_time() + timeout
    async with reply_waiter(store) as wait:
        while (left := deadline - trio.current_time()) > 0:
            raw = await wait(request_id, max(0.01, min(REPLY_SLICE, left)))
            if raw is not None:
                return json.loads(raw)
            if await runtime_holder(store) is None:
                raise RuntimeNotRunningError(
                    f"The runtime of town {store.keys.town} stopped before answering"
                    f" the {verb} request."
                )
    raise TimeoutExpiredError(
        f"The running town did not answer the {verb} request within {timeout:g} s."
    )


async def notify(store: Store, verb: str, **args: Any) -> None:
    """Tell the runtime something changed, without waiting (a no-op if none runs)."""
    await store.run_ops(notify_ops(store, verb, [args]))


def notify_ops(store: Store, verb: str, each: list[dict[str, Any]]) -> list[list[str]]:
    """The writes of :func:`notify` for one request per argument set in ``each`` and one
    wake-up for all, to run inside another atomic step (e.g. a batch spawn's script)."""
    payloads = [json.dumps({"id": new_id(), "verb": verb, **args}) for args in each]
    # Lua's unpack() of one command takes at most ~8,000 values: RPUSH in slices.
    ops = [
        ["RPUSH", store.keys.control, *payloads[i : i + NOTIFY_SLICE]]
        for i in range(0, len(payloads), NOTIFY_SLICE)
    ]
    return [*ops, ["PUBLISH", store.keys.wake, CONTROL_WAKE]]
