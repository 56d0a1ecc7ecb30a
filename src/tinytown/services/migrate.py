"""``tt migrate``: bring records of the Rust Tinytown into a town.

Two sources, each converted to this project's JSON through the model:

* ``tt migrate``: the old global layout (before towns), ``tt:<type>:<id>``: agents and
  tasks as hashes of flat strings (tags a JSON array string, rfc3339 ``+00:00`` stamps),
  inboxes and urgent inboxes as lists of message JSON, and a ``tt:backlog`` list of task
  ids. Each record is written under ``tt:<town>:`` with its index entries and its old key
  removed, in one atomic step per record (a *move*; ``keep_old`` leaves the old keys).
* ``tt migrate --hash``: Rust 0.10's records inside the town: agents and tasks stored as
  hashes at the very keys this project uses (``tt:<town>:agent:<id>``). Each hash is
  replaced by the JSON record, with its index entry, in one atomic step; the step checks
  that the hash still holds what was read (every field), so a record written meanwhile
  is never lost. Rust's urgent lists join the inbox as urgent messages.

Nothing existing is overwritten (it is skipped and reported, and its old key kept),
malformed records are reported and skipped (kept), and a dry run changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from tinytown.errors import InvalidNameError, MalformedRecordError
from tinytown.model import Message, Priority, Task, TaskState, dumps, loads
from tinytown.model.ids import is_uuid, parse_time
from tinytown.services import legacy
from tinytown.store import admin, indexes
from tinytown.store.client import ResponseError
from tinytown.store.records import Conflict, GuardFailed, Op

if TYPE_CHECKING:
    from tinytown.services.town import Town

OLD_BACKLOG = "tt:backlog"


@attrs.define
class MigrationReport:
    """What was (or, with ``dry_run``, would be) migrated, skipped, or found malformed.

    ``kept``: old keys whose content now lives in the town but which were left in place
    (``keep_old``, or an old list with malformed entries); ``removed``: old keys deleted
    by the move."""

    dry_run: bool
    migrated: list[tuple[str, str]] = attrs.field(factory=list)
    skipped: list[tuple[str, str]] = attrs.field(factory=list)
    malformed: list[tuple[str, str]] = attrs.field(factory=list)
    kept: list[str] = attrs.field(factory=list)
    removed: list[str] = attrs.field(factory=list)

    @property
    def old_keys(self) -> list[str]:
        """Old keys whose content now lives (or, in a dry run, would live) in the town."""
        return list(dict.fromkeys(k for old, _ in self.migrated for k in old.split(" + ")))


async def old_keys(town: Town, kind: str) -> list[str]:
    """Old-layout keys ``tt:<kind>:<uuid>`` (SCAN; the pattern has no town part)."""
    found = await admin.scan(town.store, f"tt:{kind}:*")
    return sorted(k for k in found if k.count(":") == 2 and is_uuid(k.split(":")[2]))


async def migrate(town: Town, *, dry_run: bool = False, keep_old: bool = False) -> MigrationReport:
    """Move the old global keys into ``town``: each record is written in the town and its
    old key deleted in one atomic step (``keep_old``: the old keys stay).

    Cancellable: each record moves in its own atomic step; a cancelled run leaves some
    records migrated, and running it again skips those and completes the rest.
    """
    report = MigrationReport(dry_run)
    presets = town.config.clis()
    for key in await old_keys(town, "agent"):
        await _one(town, report, key, lambda t, k, f: _agent_step(t, k, f, presets), keep_old)
    plan_ids = set(await indexes.plan_map(town.store))
    for key in await old_keys(town, "task"):
        await _one(town, report, key, lambda t, k, f: _task_step(t, k, f, plan_ids), keep_old)
    await _inboxes(town, report, keep_old)
    await _backlog(town, report, keep_old)
    return report


async def _read_record(town: Town, key: str) -> tuple[dict[str, Any], list[tuple[list[str], Any]]]:
    """The old record's fields, and guards that hold while it is unchanged."""
    kind = await admin.key_type(town.store, key)
    if kind == "hash":
        (fields,) = await admin.hashes(town.store, [key])
        return fields, _hash_guards(key, fields)
    if kind == "string":  # an even older version stored the JSON itself
        raw = await town.store.get_raw(key) or "null"
        data = json.loads(raw)
        if isinstance(data, dict):
            return data, [(["GET", key], raw)]
    raise ValueError(f"a {kind} where a hash was expected")


def _hash_guards(key: str, fields: Mapping[str, str]) -> list[tuple[list[str], Any]]:
    """Guards that hold while the hash at ``key`` holds exactly ``fields``."""
    guards: list[tuple[list[str], Any]] = [(["HLEN", key], len(fields))]
    guards += [(["HGET", key, name], value) for name, value in fields.items()]
    return guards


async def _one(town: Town, report: MigrationReport, key: str, step: Any, keep_old: bool) -> None:
    try:
        fields, unchanged = await _read_record(town, key)
        target, new, ops, guards, why = step(town, key, fields)
    except (ValueError, TypeError, InvalidNameError) as exc:
        report.malformed.append((key, str(exc).rstrip(".")))
        return
    n_guards = len(guards)
    if not keep_old:
        guards = [*guards, *unchanged]
        ops = [*ops, ["DEL", key]]
    try:
        if report.dry_run:
            if await admin.exists(town.store, target):
                raise Conflict(target)
            if not await admin.guards_hold(town.store, guards[:n_guards]):
                raise GuardFailed(0)
        else:
            await town.store.apply(target, expected=None, new=new, ops=ops, guards=guards)
    except Conflict:
        report.skipped.append((key, f"{target} already exists"))
    except GuardFailed as failed:
        changed = failed.index >= n_guards
        report.skipped.append((key, f"{key} changed meanwhile; run again" if changed else why))
    except ResponseError:  # its type changed under us
        report.skipped.append((key, f"{key} changed meanwhile; run again"))
    else:
        report.migrated.append((key, target))
        _note_old(report, [key], keep_old)


def _note_old(report: MigrationReport, keys: list[str], keep: bool) -> None:
    if report.dry_run:
        return
    (report.kept if keep else report.removed).extend(keys)


def _agent_step(
    town: Town, key: str, f: dict[str, Any], presets: Mapping[str, str]
) -> tuple[str, str, list[Op], Any, str]:
    agent = legacy.agent_from_fields(key, f, presets)
    ops: list[Op] = [
        ["HSET", town.keys.agents, agent.name, agent.id],
        town.store.event_op(
            "migrate", agent=agent.id, text=f"migrated agent {agent.name} from {key}"
        ),
    ]
    guards = [(["HEXISTS", town.keys.agents, agent.name], 0)]
    why = f"the town already has an agent named {agent.name!r}"
    return town.keys.agent(agent.id), dumps(agent), ops, guards, why


def _task_step(
    town: Town, key: str, f: dict[str, Any], plan_ids: set[str]
) -> tuple[str, str, list[Op], Any, str]:
    tags = legacy.tags_field(f)
    plans = [t[5:] for t in tags if t.startswith("plan:") and t[5:] not in plan_ids]
    plan_id = plans[0] if plans else None  # `tt sync push` then finds it: no duplicate
    task = legacy.task_from_fields(key, f, plan_id)
    score = str(parse_time(task.created_at).timestamp())
    ops: list[Op] = [["ZADD", town.keys.tasks, score, task.id]]
    if plan_id:
        plan_ids.add(plan_id)
        ops.append(["HSETNX", town.keys.plan_ids, plan_id, task.id])
    return town.keys.task(task.id), dumps(task), ops, [], ""


def _parse_messages(
    key: str, raws: list[str], report: MigrationReport, urgent: bool
) -> tuple[list[str], bool]:
    """The messages of one old list as our JSON, and whether every entry was good."""
    out: list[str] = []
    whole = True
    for n, raw in enumerate(raws):
        try:
            message = loads(Message, raw, where=f"{key}[{n}]")
        except MalformedRecordError as exc:
            report.malformed.append((f"{key}[{n}]", str(exc).rstrip(".")))
            whole = False
            continue
        if urgent:
            message = attrs.evolve(message, priority=Priority.URGENT)
        out.append(dumps(message))
    return out, whole


async def _inboxes(town: Town, report: MigrationReport, keep_old: bool) -> None:
    """Inbox and urgent lists, merged per agent (urgent first), each message checked.
    An old list with a malformed entry is kept (its good messages are copied)."""
    owners: dict[str, list[str]] = {}
    for kind in ("urgent", "inbox"):
        for key in await old_keys(town, kind):
            owners.setdefault(key.split(":")[2], []).append(key)
    for agent_id, keys in sorted(owners.items()):
        messages: list[str] = []
        guards: list[tuple[list[str], Any]] = [(["EXISTS", town.keys.inbox(agent_id)], 0)]
        deletable: list[str] = []
        for key in keys:
            raws = await _read_list(town, key, report)
            got, whole = _parse_messages(key, raws, report, key.startswith("tt:urgent:"))
            messages += got
            guards.append((["LLEN", key], len(raws)))
            if whole and not keep_old:
                deletable.append(key)
        old, target = " + ".join(keys), town.keys.inbox(agent_id)
        if not messages:
            continue
        if await admin.exists(town.store, target):
            report.skipped.append((old, f"{target} already exists"))
            continue
        if not report.dry_run:
            ops: list[Op] = [["RPUSH", target, *messages], ["PUBLISH", town.keys.wake, agent_id]]
            if deletable:
                ops.append(["DEL", *deletable])
            try:
                await town.store.apply(target, ops=ops, guards=guards)
            except GuardFailed as failed:
                why = f"{target} already exists" if failed.index == 0 else "changed meanwhile"
                report.skipped.append((old, why))
                continue
        report.migrated.append((old, target))
        _note_old(report, deletable, False)
        _note_old(report, [k for k in keys if k not in deletable], True)


async def _read_list(town: Town, key: str, report: MigrationReport) -> list[str]:
    if await admin.key_type(town.store, key) != "list":
        report.malformed.append((key, "not a list"))
        return []
    return await indexes.raw_list(town.store, key)


async def _backlog(town: Town, report: MigrationReport, keep_old: bool) -> None:
    """Append the old backlog's pending tasks to the town's backlog (no duplicates); a
    move takes them (and those the town's backlog already has) out of the old backlog,
    which keeps only the ids that could not move."""
    if not await admin.exists(town.store, OLD_BACKLOG):
        return
    ids = await _read_list(town, OLD_BACKLOG, report)
    present = set(await indexes.backlog_ids(town.store))
    coming = {old.split(":")[2] for old, _ in report.migrated if old.startswith("tt:task:")}
    add: list[str] = []
    done: list[str] = []
    for task_id in dict.fromkeys(ids):
        if task_id in present:
            done.append(task_id)
            continue
        raw = await town.store.get_raw(town.keys.task(task_id)) if is_uuid(task_id) else None
        if raw is None and not (report.dry_run and task_id in coming):
            report.skipped.append((f"{OLD_BACKLOG}[{task_id}]", "no such task in the town"))
            continue
        if raw is not None and not _pending(raw):
            report.skipped.append((f"{OLD_BACKLOG}[{task_id}]", "the task is not pending"))
            continue
        add.append(task_id)
    ops: list[Op] = []
    if add:
        ops += [["RPUSH", town.keys.backlog, *add], ["PUBLISH", town.keys.wake, "backlog"]]
    if not keep_old:
        ops += [["LREM", OLD_BACKLOG, "0", task_id] for task_id in add + done]
    if ops and not report.dry_run:
        await town.store.run_ops(ops)
    if add:
        report.migrated.append((OLD_BACKLOG, town.keys.backlog))
    if not report.dry_run and (add or done):
        gone = not keep_old and not await admin.exists(town.store, OLD_BACKLOG)
        _note_old(report, [OLD_BACKLOG], not gone)


def _pending(raw: str) -> bool:
    try:
        return loads(Task, raw).state is TaskState.PENDING
    except MalformedRecordError:
        return False


# -- Rust 0.10 records inside the town (tt migrate --hash) --------------------------------


async def migrate_hashes(town: Town, *, dry_run: bool = False) -> MigrationReport:
    """Replace the town's Rust hash-format agents and tasks by JSON records (with their
    name and task index entries), one atomic step per record; a key that already holds
    a JSON record is never touched, nor a hash whose agent name the town already uses.
    Rust's urgent lists (``tt:<town>:urgent:<id>``) move into the inboxes as urgent
    messages. ``old`` and ``new`` of each report entry are the same key.

    Cancellable: each record converts in one atomic step; running it again completes
    an interrupted run (converted records are JSON now and left alone).
    """
    report = MigrationReport(dry_run)
    store = town.store
    presets = town.config.clis()
    for key in await legacy.hash_keys(store, "agent"):
        await _convert(town, report, key, lambda k, f: _agent_step(town, k, f, presets))
    plan_ids = set(await indexes.plan_map(store))
    for key in await legacy.hash_keys(store, "task"):
        await _convert(town, report, key, lambda k, f: _task_step(town, k, f, plan_ids))
    await _urgent_lists(town, report)
    return report


async def _convert(town: Town, report: MigrationReport, key: str, step: Any) -> None:
    (fields,) = await admin.hashes(town.store, [key])
    if not fields:
        return  # converted or deleted since the scan
    try:
        _, new, ops, guards, why = step(key, fields)
    except (ValueError, TypeError, InvalidNameError) as exc:
        report.malformed.append((key, str(exc).rstrip(".")))
        return
    try:
        if report.dry_run:
            if not await admin.guards_hold(town.store, guards):
                raise GuardFailed(0)
        else:
            all_guards = [*guards, *_hash_guards(key, fields)]
            await town.store.apply(key, expected="*", new=new, ops=ops, guards=all_guards)
    except GuardFailed as failed:
        changed = failed.index >= len(guards)
        report.skipped.append((key, f"{key} changed meanwhile; run again" if changed else why))
    except ResponseError:  # it is no longer a hash
        report.skipped.append((key, f"{key} changed meanwhile; run again"))
    else:
        report.migrated.append((key, key))


async def _urgent_lists(town: Town, report: MigrationReport) -> None:
    prefix = f"{town.keys.prefix}urgent:"
    found = await admin.scan(town.store, f"{prefix}*", kind="list")
    for key in [k for k in found if is_uuid(k[len(prefix) :])]:
        raws = await indexes.raw_list(town.store, key)
        messages, whole = _parse_messages(key, raws, report, urgent=True)
        if not whole or not messages:
            if not whole:
                report.skipped.append((key, "it holds malformed messages; kept"))
            continue
        target = town.keys.inbox(key[len(prefix) :])
        if not report.dry_run:
            # LPUSH in reverse keeps the urgent list's order at the inbox's head.
            ops: list[Op] = [
                ["LPUSH", target, *reversed(messages)],
                ["PUBLISH", town.keys.wake, key[len(prefix) :]],
                ["DEL", key],
            ]
            try:
                await town.store.apply(target, ops=ops, guards=[(["LLEN", key], len(raws))])
            except GuardFailed:
                report.skipped.append((key, f"{key} changed meanwhile; run again"))
                continue
        report.migrated.append((key, target))


async def legacy_count(town: Town) -> int:
    """How many of the town's agent and task records are still in Rust's hash format."""
    return sum([len(await legacy.hash_keys(town.store, k)) for k in ("agent", "task")])
