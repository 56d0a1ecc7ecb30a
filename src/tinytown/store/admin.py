"""Administrative Redis operations: key scans and bulk deletes (``tt reset``), and the
town's restricted ACL user for agents. Services call these; raw commands stay here."""

from __future__ import annotations

from collections.abc import Sequence

from tinytown.store.records import Store

#: Batch sizes: SCAN COUNT and keys per UNLINK.
SCAN_COUNT = 1000

#: Every command an agent's ``tt`` needs (reads and writes of records, lists, streams,
#: the scripts that change them atomically, pub/sub wake-ups). Nothing that lists or
#: reaches other keys (SCAN, KEYS), configures or stops the server, or manages users.
AGENT_COMMANDS: tuple[str, ...] = (
    "ping", "echo", "hello", "select",
    "get", "set", "mget", "exists", "del", "unlink", "type", "pttl", "expire",
    "hget", "hgetall", "hset", "hsetnx", "hdel", "hkeys", "hmget", "hexists", "hlen",
    "zadd", "zrange", "zcard", "zrem",
    "lrange", "llen", "rpush", "lpush", "lpop", "rpop", "lrem", "lmove", "blpop", "lpos",
    "xadd", "xrange", "xrevrange", "xread", "xlen",
    "publish", "subscribe", "unsubscribe",
    "eval", "evalsha", "multi", "exec", "discard",
)  # fmt: skip


async def scan(store: Store, pattern: str) -> list[str]:
    """Every key matching ``pattern``, by SCAN (never KEYS), sorted, without duplicates."""
    keys: set[str] = set()
    cursor = "0"
    while True:
        cursor, batch = await store.redis.execute(
            "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT
        )
        keys.update(batch)
        if str(cursor) == "0":
            return sorted(keys)


async def exists(store: Store, key: str) -> bool:
    return bool(await store.redis.execute("EXISTS", key))


async def unlink(store: Store, keys: Sequence[str]) -> None:
    """Delete ``keys`` in batches (UNLINK frees memory in the background)."""
    for start in range(0, len(keys), SCAN_COUNT):
        await store.redis.execute("UNLINK", *keys[start : start + SCAN_COUNT])


async def set_agent_user(store: Store, username: str, password: str) -> None:
    """Create (or reset) the ACL user agents log in as: only this town's keys
    (``~tt:<town>:*``) and channels (``&tt:<town>:*``), only :data:`AGENT_COMMANDS`,
    and ``password`` as its only password. Needs Redis 6.2+ and the ``acl`` permission;
    raises ResponseError otherwise."""
    pattern = store.keys.pattern  # the town name has no glob characters
    await store.redis.execute(
        "ACL",
        "SETUSER",
        username,
        "reset",
        "on",
        f">{password}",
        f"~{pattern}",
        f"&{pattern}",
        "-@all",
        *(f"+{command}" for command in AGENT_COMMANDS),
    )


async def delete_user(store: Store, username: str) -> None:
    await store.redis.execute("ACL", "DELUSER", username)
