"""The runtime lease: at most one ``tt run`` per town, and a dead one's lease goes quickly.

The lease is a JSON value (id, host, boot id, pid, start) with a short expiry that the
runtime refreshes. A holder on this host and boot whose pid is gone is dead at once (no
need to wait for the expiry); a holder elsewhere is dead when its lease expires.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import trio

from tinytown.errors import RuntimeBusyError
from tinytown.model import new_id, now
from tinytown.runtime.proctree import ProcessLedger
from tinytown.services.control import LeaseHolder, parse_lease
from tinytown.services.localproc import boot_id, host, is_local, is_running
from tinytown.store import lease as ops
from tinytown.store.records import Store

#: Lease expiry: how long a runtime on another host may be dead before a new one can start.
LEASE_MS = 3_000
#: The refresh period; three refreshes fit in one expiry, so one slow refresh is harmless.
REFRESH_S = LEASE_MS / 3000


class Lease:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.value = json.dumps(
            {
                "id": new_id(),
                "host": host(),
                "boot": boot_id(),
                "pid": os.getpid(),
                "started": now(),
            }
        )

    async def acquire(self, report: Callable[[str], None] | None = None) -> None:
        """Take the lease or raise RuntimeBusyError naming the holder; once it is held,
        kill the leftovers of a dead runtime's rounds (the process ledger, proctree.py),
        reporting each through ``report``, so no round starts beside an orphan.

        A lease of a process of this host that is gone is taken over at once. An unreadable
        lease (not written by a runtime) is reported through ``report``, given an expiry if
        it had none, and waited out (at most ``LEASE_MS``); if something keeps it alive,
        RuntimeBusyError says to clear it with ``tt down --force``.

        Cancellable: cancelled before the lease is written, nothing changed; after, the
        lease expires by itself within ``LEASE_MS`` and leftovers not yet killed are found
        again by the next ``tt run``.
        """
        holder = await ops.lease_take(self.store, self.value, LEASE_MS)
        if holder != self.value:
            await self._take_over(holder, report)
        # Before any actor starts: kill what the rounds of a dead runtime left running.
        for note in await ProcessLedger(self.store).reap_leftovers():
            if report:
                report(note)

    async def _take_over(self, holder: str | None, report: Callable[[str], None] | None) -> None:
        current = parse_lease(holder) if holder else None
        if current is not None and current.dead_here():
            await ops.lease_release(self.store, holder or "")
        elif current is not None and current.corrupt:
            await self._wait_out_corrupt(holder or "", report)
        holder = await ops.lease_take(self.store, self.value, LEASE_MS)
        if holder != self.value:
            current = parse_lease(holder) if holder else None
            raise RuntimeBusyError(
                f"Town {self.store.keys.town} is already running: "
                f"{current.describe() if current else 'another process'}."
            )

    async def _wait_out_corrupt(self, raw: str, report: Callable[[str], None] | None) -> None:
        if report:
            report(
                f"the runtime lease holds an unreadable value ({raw[:40]!r}); waiting up to"
                f" {LEASE_MS / 1000:g} s for it to expire ('tt down --force' clears it)"
            )
        await ops.lease_expire_if(self.store, raw, LEASE_MS)
        # Sleep until the expiry Redis reports, then look again: its clock and ours may
        # differ by a millisecond, and the key may have changed meanwhile.
        with trio.move_on_after(LEASE_MS / 1000 + 1):
            while True:
                value, ttl = await ops.lease_read(self.store)
                if value != raw or ttl <= 0:
                    return
                await trio.sleep(min(ttl, LEASE_MS) / 1000 + 0.005)

    async def keep(self, interval: float = REFRESH_S) -> None:
        """Refresh the lease every ``interval`` s (at most ``REFRESH_S``) until cancelled;
        raise RuntimeBusyError if it was taken. Cancellable at any point."""
        interval = min(interval, REFRESH_S)
        while True:
            await trio.sleep(interval)
            holder = await ops.lease_take(self.store, self.value, LEASE_MS)
            if holder != self.value:
                raise RuntimeBusyError("The runtime lease was taken by another process.")

    async def release(self) -> None:
        """Give the lease up if we hold it. Shielded, and gives up after 2 s (the lease
        then expires by itself)."""
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await ops.lease_release(self.store, self.value)


async def force_clear(store: Store, say: Callable[[str], None]) -> LeaseHolder | None:
    """``tt down --force``: delete a lease that is unreadable or whose holder cannot be
    shown to be alive (a process on another host), telling ``say`` what was cleared.

    Returns the holder that still blocks: a live process on this host (kill it first), or
    a newer lease written meanwhile; None when nothing holds the town any more.
    Cancellable (the lease is then deleted or not).
    """
    raw, _ = await ops.lease_read(store)
    if raw is None:
        return None
    holder = parse_lease(raw)
    if not holder.corrupt and is_local(holder.host, holder.boot_id) and is_running(holder.pid):
        return holder
    await ops.lease_release(store, raw)  # only if it still holds what we judged
    raw_now, _ = await ops.lease_read(store)
    if raw_now is not None:
        return parse_lease(raw_now)
    what = repr(raw[:60]) if holder.corrupt else holder.describe()
    say(f"Cleared the runtime lease ({what}).")
    return None
