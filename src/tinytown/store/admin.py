"""Administrative Redis operations: key scans and bulk deletes (``tt reset``), and the
town's restricted ACL user for agents. Services call these; raw commands stay here.

Cancellation: every function is cancellable; reads change nothing, ``set_agent_user`` is
one command, and ``unlink`` may have deleted some batches when cancelled (run it again)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinytown.store.client import Arg, ResponseError
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


async def scan(store: Store, pattern: str, *, kind: str | None = None) -> list[str]:
    """Every key matching ``pattern`` (and holding a ``kind`` value: ``hash``, ``list``
    ..., when given), by SCAN (never KEYS), sorted, without duplicates."""
    keys: set[str] = set()
    cursor = "0"
    typed: list[Arg] = ["TYPE", kind] if kind else []
    while True:
        cursor, batch = await store.redis.execute(
            "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, *typed
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


# -- snapshots (tt save / restore) ---------------------------------------------------

#: How each key type is read whole.
_READERS: dict[str, list[str | int]] = {
    "string": ["GET"],
    "list": ["LRANGE", "{key}", 0, -1],
    "hash": ["HGETALL"],
    "set": ["SMEMBERS"],
    "zset": ["ZRANGE", "{key}", 0, -1, "WITHSCORES"],
    "stream": ["XRANGE", "{key}", "-", "+"],
}
READABLE_TYPES = tuple(_READERS)


def _reader(key: str, kind: str) -> list[Arg]:
    parts = _READERS[kind]
    if len(parts) == 1:
        return [parts[0], key]
    return [key if p == "{key}" else p for p in parts]


async def types_and_ttls(store: Store, keys: Sequence[str]) -> list[tuple[str, str, int]]:
    """(key, type, PTTL in ms or -1 for none) of each key, in one round trip."""
    if not keys:
        return []
    meta = await store.redis.pipeline([c for k in keys for c in (["TYPE", k], ["PTTL", k])])
    return [(k, str(meta[2 * i]), int(meta[2 * i + 1])) for i, k in enumerate(keys)]


async def read_whole(store: Store, entries: Sequence[tuple[str, str]]) -> list[Any]:
    """The whole value of each (key, type), read in one MULTI/EXEC so the values are
    consistent with each other; a key that changed type or vanished reads as None."""
    if not entries:
        return []
    reads = [_reader(k, kind) for k, kind in entries]
    replies = await store.redis.pipeline([["MULTI"], *reads, ["EXEC"]])
    values = list(replies[-1] or [])
    return [None if isinstance(v, ResponseError) else v for v in values]


async def rewrite_aof(store: Store) -> tuple[Path | None, str]:
    """BGREWRITEAOF, then where the server keeps its AOF (None if it will not say), and
    a note on what happened."""
    try:
        await store.redis.execute("BGREWRITEAOF")
        note = "AOF rewrite started"
    except ResponseError as exc:
        busy = "already in progress" in str(exc)
        note = "an AOF rewrite is already in progress" if busy else f"no AOF rewrite: {exc}"
    try:
        replies = await store.redis.pipeline(
            [["CONFIG", "GET", p] for p in ("dir", "appendonly", "appendfilename", "appenddirname")]
        )
    except ResponseError:
        return None, note  # managed servers often disable CONFIG
    conf = {r[0]: r[1] for r in replies if r}
    if conf.get("appendonly") != "yes":
        note += " (appendonly is off on this server: rely on the snapshot)"
    base = Path(conf.get("dir", "."))
    return base / (conf.get("appenddirname") or conf.get("appendfilename", "")), note


# -- the old layout (tt migrate) -----------------------------------------------------


async def key_type(store: Store, key: str) -> str:
    return str(await store.redis.execute("TYPE", key))


async def hashes(store: Store, keys: Sequence[str]) -> list[dict[str, str]]:
    """Every field of each hash in ``keys``, in one round trip: an empty dict where the
    key is absent or no longer a hash."""
    if not keys:
        return []
    replies = await store.redis.pipeline([["HGETALL", k] for k in keys])
    out: list[dict[str, str]] = []
    for flat in replies:
        if isinstance(flat, ResponseError):
            out.append({})
            continue
        out.append(
            dict(flat) if isinstance(flat, dict) else dict(zip(flat[::2], flat[1::2], strict=True))
        )
    return out


async def guards_hold(store: Store, guards: Sequence[tuple[Sequence[Arg], Any]]) -> bool:
    """Whether each guard command answers as expected now (a dry run's preview of
    Store.apply's guards; not atomic)."""
    for command, want in guards:
        if await store.redis.execute(*command) != want:
            return False
    return True
