"""Named Redis operations for the runtime lease and the ledger of running CLI processes.

The lease ``tt:<town>:runtime`` (a JSON value with an expiry) says which ``tt run`` hosts
the town. The ledger ``tt:<town>:procs`` is a hash: agent id -> JSON description of the
process group its current round runs in (see runtime/proctree.py). Both are transient:
snapshots never save them.

Every function here is one Redis call (a command, a pipeline or a script). Cancellation:
each is cancellable; cancelled after the request was written, the change may or may not
have been made (each is safe to repeat).
"""

from __future__ import annotations

from tinytown.store.client import Script
from tinytown.store.records import Store
from tinytown.store.scripts import LEASE, RELEASE

#: Give KEYS[1] an expiry of ARGV[2] ms if it still holds ARGV[1] and has none.
EXPIRE_IF_NONE = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('PTTL', KEYS[1]) == -1 then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
)


def procs_key(store: Store) -> str:
    """The ledger hash of running round processes (agent id -> JSON entry)."""
    return f"{store.keys.prefix}procs"


async def lease_take(store: Store, value: str, ttl_ms: int) -> str | None:
    """Take or refresh the lease for ``value``; return the holder (``value`` when ours)."""
    return await store.redis.run_script(LEASE, [store.keys.runtime], [value, ttl_ms])


async def lease_release(store: Store, value: str) -> None:
    """Delete the lease if ``value`` holds it."""
    await store.redis.run_script(RELEASE, [store.keys.runtime], [value])


async def lease_read(store: Store) -> tuple[str | None, int]:
    """The raw lease value (None when absent) and its remaining time to live in ms
    (-1: no expiry, -2: absent), in one round trip."""
    raw, ttl = await store.redis.pipeline(
        [["GET", store.keys.runtime], ["PTTL", store.keys.runtime]]
    )
    return raw, int(ttl)


async def lease_expire_if(store: Store, raw: str, ttl_ms: int) -> None:
    """Give the lease an expiry of ``ttl_ms`` if it still holds ``raw`` and has none,
    so a corrupt value written by hand cannot block the town forever."""
    await store.redis.run_script(EXPIRE_IF_NONE, [store.keys.runtime], [raw, ttl_ms])


async def ledger_entries(store: Store) -> dict[str, str]:
    flat = await store.redis.execute("HGETALL", procs_key(store))
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def ledger_drop(store: Store, agent_ids: list[str]) -> None:
    if agent_ids:
        await store.redis.execute("HDEL", procs_key(store), *agent_ids)
