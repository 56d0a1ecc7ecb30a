"""``tt save`` and ``tt restore``: the AOF rewrite, and a portable JSON snapshot of a town.

The embedded server already keeps an append-only file in ``.tt/`` (so a town survives a
reboot); ``save`` compacts it with BGREWRITEAOF and also writes ``.tt/snapshot.json``:
every key of the town, found with SCAN (never KEYS), with its type and value in JSON
(strings, lists, hashes, sets, sorted sets, streams). ``restore`` loads such a snapshot
into a town, possibly another one: keys are stored relative to ``tt:<town>:``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tinytown.errors import (
    AlreadyExistsError,
    InvalidInputError,
    NotFoundError,
    RuntimeBusyError,
)
from tinytown.model import now
from tinytown.services import control
from tinytown.store import admin, indexes
from tinytown.store.client import Arg
from tinytown.store.records import GuardFailed, Op

if TYPE_CHECKING:
    from tinytown.services.town import Town

SNAPSHOT_FORMAT = "tinytown-snapshot"
SNAPSHOT_VERSION = 1
#: Key suffixes that are transient (lease, process ledger, control queue and replies): never saved.
TRANSIENT = ("runtime", "reply:", "procs", "control")
TYPES = admin.READABLE_TYPES
CHUNK = 500  # values per command when writing long lists/hashes back


def snapshot_path(town: Town) -> Path:
    return town.root / ".tt" / "snapshot.json"


@attrs.frozen
class SaveReport:
    snapshot: Path
    keys: int
    aof: Path | None
    aof_note: str


async def save(town: Town, output: Path | None = None) -> SaveReport:
    """Start an AOF rewrite and write the town's JSON snapshot (atomically) to ``output``.

    Cancellable: the snapshot file is replaced only when complete.
    """
    aof, note = await admin.rewrite_aof(town.store)
    snapshot = await export_snapshot(town)
    path = output or snapshot_path(town)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(snapshot, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return SaveReport(path, len(snapshot["keys"]), aof, note)


async def export_snapshot(town: Town) -> dict[str, Any]:
    """The town's keys as JSON data. Keys with an expiry (transient) are left out.

    The values are read in one MULTI/EXEC, so they are consistent with each other.
    """
    prefix = town.keys.prefix
    names = [
        k
        for k in await admin.scan(town.store, town.keys.pattern)
        if not k[len(prefix) :].startswith(TRANSIENT)
    ]
    meta = await admin.types_and_ttls(town.store, names)
    kept = [(k, t) for k, t, ttl in meta if ttl == -1 and t in TYPES]
    values = await admin.read_whole(town.store, kept)
    entries = []
    for (key, kind), value in zip(kept, values, strict=False):
        if value is None:
            continue  # changed type or vanished between SCAN and the read
        entries.append({"key": key[len(prefix) :], "type": kind, "value": _to_json(kind, value)})
    entries.sort(key=lambda e: e["key"])
    return {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "town": town.name,
        "created_at": now(),
        "keys": entries,
    }


def _pairs(flat: Any) -> list[list[Any]]:
    if isinstance(flat, dict):
        return [[k, v] for k, v in flat.items()]
    return [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)]


def _to_json(kind: str, value: Any) -> Any:
    if kind == "hash":
        return dict(_pairs(value))
    if kind == "zset":  # [[member, score-as-text], ...]: the text keeps the exact score
        return [[m, str(s)] for m, s in _pairs(value)]
    if kind == "stream":
        return [[entry_id, dict(_pairs(fields))] for entry_id, fields in value]
    if kind == "set":
        return sorted(value)
    return value


@attrs.frozen
class RestoreReport:
    source_town: str
    keys: int
    replaced: int


async def restore(town: Town, path: Path | None = None, *, force: bool = False) -> RestoreReport:
    """Load a snapshot into ``town``, in one atomic script.

    Refuses while the town runs, and if it already has agents or tasks unless ``force``
    (then every key of the town is replaced). Only ``tt:<town>:`` keys are touched.
    Cancellable: the load is one script, so it happened entirely or not at all.
    """
    path = path or snapshot_path(town)
    snapshot = read_snapshot(path)
    if await control.runtime_holder(town.store):
        raise RuntimeBusyError(f"Town {town.name} is running; stop 'tt run' before restoring.")
    guards: list[tuple[Sequence[Arg], Any]] = []
    ops: list[Op] = []
    existing = [
        k for k in await admin.scan(town.store, town.keys.pattern) if k != town.keys.runtime
    ]
    if force:
        ops += [["DEL", k] for k in existing]
    else:
        counts = await indexes.town_counts(town.store)
        if any(counts):
            raise AlreadyExistsError(
                f"Town {town.name} already has {counts[0]} agents and {counts[1]} tasks;"
                " use --force to replace them with the snapshot."
            )
        guards = [(["HLEN", town.keys.agents], 0), (["ZCARD", town.keys.tasks], 0)]
    for entry in snapshot["keys"]:
        key = town.keys.prefix + entry["key"]
        ops.append(["DEL", key])
        ops += _write_ops(key, entry["type"], entry["value"])
    source = str(snapshot.get("town", "?"))
    ops.append(["HSET", town.keys.meta, "name", town.name, "restored_at", now()])
    ops.append(["HSET", town.keys.meta, "restored_from", source])
    try:
        await town.store.apply(town.keys.meta, ops=ops, guards=guards)
    except GuardFailed:
        raise AlreadyExistsError(
            f"Agents or tasks appeared in town {town.name} meanwhile; nothing was restored."
        ) from None
    return RestoreReport(source, len(snapshot["keys"]), len(existing) if force else 0)


def read_snapshot(path: Path) -> dict[str, Any]:
    """Read and check a snapshot file; InvalidInputError names what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"No snapshot at {path}; run 'tt save' first.") from None
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path} is not a readable snapshot: {exc}.") from exc
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise InvalidInputError(f"{path} is not a Tinytown snapshot.")
    if data.get("version") != SNAPSHOT_VERSION:
        raise InvalidInputError(f"{path} has snapshot version {data.get('version')!r}.")
    keys = data.get("keys")
    if not isinstance(keys, list):
        raise InvalidInputError(f"{path} has no 'keys' list.")
    for n, entry in enumerate(keys):
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("key"), str)
            and entry["key"]
            and entry.get("type") in TYPES
        )
        if not ok:
            raise InvalidInputError(f"{path}: entry {n} of 'keys' is malformed.")
        try:
            _write_ops("x", entry["type"], entry.get("value"))
        except (TypeError, ValueError, AttributeError) as exc:
            raise InvalidInputError(f"{path}: key {entry['key']!r} has a bad value.") from exc
    return data


def _write_ops(key: str, kind: str, value: Any) -> list[Op]:
    """Commands that recreate a key. Raises on any bad value: a Lua error half-way would
    leave the earlier commands applied, so everything is checked before the script runs."""
    if kind == "string":
        if not isinstance(value, str):
            raise TypeError(kind)
        return [["SET", key, value]]
    if not isinstance(value, (list, dict)):
        raise TypeError(kind)
    if kind == "stream":
        last = (0, 0)
        ops: list[Op] = []
        for entry_id, fields in value:
            match = _STREAM_ID.fullmatch(str(entry_id))
            if not match or (int(match[1]), int(match[2])) <= last:
                raise ValueError(f"stream id {entry_id!r} is bad or out of order")
            last = (int(match[1]), int(match[2]))
            if fields:
                ops.append(["XADD", key, str(entry_id), *_flat(dict(fields).items())])
        return ops
    if kind == "hash":
        items = [[str(k), str(v)] for k, v in dict(value).items()]
        return [["HSET", key, *_flat(items[i : i + CHUNK])] for i in range(0, len(items), CHUNK)]
    if kind == "zset":
        items = [[_score(s), str(m)] for m, s in value]
        return [["ZADD", key, *_flat(items[i : i + CHUNK])] for i in range(0, len(items), CHUNK)]
    verb = "RPUSH" if kind == "list" else "SADD"
    members = [str(v) for v in value]
    return [[verb, key, *members[i : i + CHUNK]] for i in range(0, len(members), CHUNK)]


_STREAM_ID = re.compile(r"(\d+)-(\d+)")


def _score(score: Any) -> str:
    if isinstance(score, bool) or math.isnan(float(score)):
        raise ValueError(f"bad score {score!r}")
    return score if isinstance(score, str) else repr(float(score))


def _flat(pairs: Any) -> list[str]:
    return [str(x) for pair in pairs for x in pair]
