"""The runtime lease: at most one ``tt run`` per town, and a dead one's lease expires."""

from __future__ import annotations

import json
import os
import socket

import trio

from tinytown.errors import RuntimeBusyError
from tinytown.model import new_id, now
from tinytown.services.control import runtime_holder
from tinytown.store.records import Store
from tinytown.store.scripts import LEASE, RELEASE

LEASE_MS = 10_000


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


class Lease:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.value = json.dumps(
            {"id": new_id(), "host": socket.gethostname(), "pid": os.getpid(), "started": now()}
        )

    async def acquire(self) -> None:
        """Take the lease or raise RuntimeBusyError naming the holder."""
        holder = await self.store.redis.run_script(
            LEASE, [self.store.keys.runtime], [self.value, LEASE_MS]
        )
        if holder != self.value and await self._holder_is_dead(holder):
            holder = await self.store.redis.run_script(
                LEASE, [self.store.keys.runtime], [self.value, LEASE_MS]
            )
        if holder != self.value:
            current = await runtime_holder(self.store)
            who = current.describe() if current else "another process"
            raise RuntimeBusyError(f"Town {self.store.keys.town} is already running: {who}.")

    async def _holder_is_dead(self, raw: str) -> bool:
        """True (and the stale lease removed) when the holder was a process on this host
        that no longer exists: a crashed ``tt run`` need not wait for the expiry."""
        try:
            data = json.loads(raw)
            pid, host = int(data["pid"]), str(data["host"])
        except (ValueError, KeyError, TypeError):
            return False
        if host != socket.gethostname() or _alive(pid):
            return False
        await self.store.redis.run_script(RELEASE, [self.store.keys.runtime], [raw])
        return True

    async def keep(self, interval: float) -> None:
        """Refresh the lease every ``interval`` s until cancelled; raise if it was taken."""
        while True:
            await trio.sleep(interval)
            holder = await self.store.redis.run_script(
                LEASE, [self.store.keys.runtime], [self.value, LEASE_MS]
            )
            if holder != self.value:
                raise RuntimeBusyError("The runtime lease was taken by another process.")

    async def release(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await self.store.redis.run_script(RELEASE, [self.store.keys.runtime], [self.value])
