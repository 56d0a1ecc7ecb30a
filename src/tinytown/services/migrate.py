"""``tt migrate``: bring the old global layout (before towns) into a town's namespace.

The Rust tool once kept everything under ``tt:<type>:<id>``: agents and tasks as hashes of
flat strings (tags a JSON array string, rfc3339 ``+00:00`` stamps), inboxes and urgent
inboxes as lists of message JSON, and a ``tt:backlog`` list of task ids. Each record is
converted to this project's JSON through the model and written under ``tt:<town>:`` with
its index entries, one atomic step per record. Nothing existing is overwritten (it is
skipped and reported), malformed records are reported and skipped, and the old keys are
left in place for the user to delete.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import attrs

from tinytown.errors import InvalidNameError, MalformedRecordError
from tinytown.model import (
    Agent,
    AgentState,
    AgentType,
    Message,
    Priority,
    SpawnMode,
    Task,
    TaskState,
    dumps,
    loads,
    now,
    validate_agent_name,
)
from tinytown.model.ids import format_time, is_uuid, parse_time
from tinytown.model.nicknames import nickname_for
from tinytown.store import admin, indexes
from tinytown.store.records import Conflict, GuardFailed, Op

if TYPE_CHECKING:
    from tinytown.services.town import Town

OLD_BACKLOG = "tt:backlog"


@attrs.define
class MigrationReport:
    """What was (or, with ``dry_run``, would be) migrated, skipped, or found malformed."""

    dry_run: bool
    migrated: list[tuple[str, str]] = attrs.field(factory=list)
    skipped: list[tuple[str, str]] = attrs.field(factory=list)
    malformed: list[tuple[str, str]] = attrs.field(factory=list)

    @property
    def old_keys(self) -> list[str]:
        """Old keys whose content now lives in the town (safe to delete afterwards)."""
        return list(dict.fromkeys(k for old, _ in self.migrated for k in old.split(" + ")))


async def old_keys(town: Town, kind: str) -> list[str]:
    """Old-layout keys ``tt:<kind>:<uuid>`` (SCAN; the pattern has no town part)."""
    found = await admin.scan(town.store, f"tt:{kind}:*")
    return sorted(k for k in found if k.count(":") == 2 and is_uuid(k.split(":")[2]))


async def migrate(town: Town, *, dry_run: bool = False) -> MigrationReport:
    """Convert the old global keys into ``town``. Old keys are never changed or deleted.

    Cancellable: each record moves in its own atomic step; a cancelled run leaves some
    records migrated, and running it again skips those and completes the rest.
    """
    report = MigrationReport(dry_run)
    for key in await old_keys(town, "agent"):
        await _one(town, report, key, _agent_step)
    plan_ids = set(await indexes.plan_map(town.store))
    for key in await old_keys(town, "task"):
        await _one(town, report, key, lambda t, k, f: _task_step(t, k, f, plan_ids))
    await _inboxes(town, report)
    await _backlog(town, report)
    return report


async def _read_record(town: Town, key: str) -> dict[str, Any]:
    kind = await admin.key_type(town.store, key)
    if kind == "hash":
        return await admin.hash_fields(town.store, key)
    if kind == "string":  # an even older version stored the JSON itself
        data = json.loads(await town.store.get_raw(key) or "null")
        if isinstance(data, dict):
            return data
    raise ValueError(f"a {kind} where a hash was expected")


async def _one(town: Town, report: MigrationReport, key: str, step: Any) -> None:
    try:
        fields = await _read_record(town, key)
        target, new, ops, guards, why = step(town, key, fields)
    except (ValueError, TypeError, InvalidNameError) as exc:
        report.malformed.append((key, str(exc).rstrip(".")))
        return
    try:
        if report.dry_run:
            if await admin.exists(town.store, target):
                raise Conflict(target)
            if not await admin.guards_hold(town.store, guards):
                raise GuardFailed(0)
        else:
            await town.store.apply(target, expected=None, new=new, ops=ops, guards=guards)
    except Conflict:
        report.skipped.append((key, f"{target} already exists"))
    except GuardFailed:
        report.skipped.append((key, why))
    else:
        report.migrated.append((key, target))


def _agent_step(town: Town, key: str, f: dict[str, Any]) -> tuple[str, str, list[Op], Any, str]:
    agent_id = _record_id(key, f)
    name = validate_agent_name(_text(f, "name") or "")
    agent = Agent(
        id=agent_id,
        name=name,
        nickname=_text(f, "nickname") or nickname_for(agent_id),
        cli=_text(f, "cli") or "",
        role_id=_text(f, "role_id"),
        agent_type=AgentType(_text(f, "agent_type") or "worker"),
        state=AgentState(_text(f, "state") or "starting"),
        current_task=_uuid(f, "current_task"),
        parent_agent_id=_uuid(f, "parent_agent_id"),
        spawn_mode=SpawnMode.parse(_text(f, "spawn_mode") or "fresh"),
        created_at=_time(f, "created_at"),
        last_heartbeat=_time(f, "last_heartbeat"),
        tasks_completed=_int(f, "tasks_completed"),
        rounds_completed=_int(f, "rounds_completed"),
    )
    ops: list[Op] = [
        ["HSET", town.keys.agents, name, agent_id],
        town.store.event_op("migrate", agent=agent_id, text=f"migrated agent {name} from {key}"),
    ]
    guards = [(["HEXISTS", town.keys.agents, name], 0)]
    why = f"the town already has an agent named {name!r}"
    return town.keys.agent(agent_id), dumps(agent), ops, guards, why


def _task_step(
    town: Town, key: str, f: dict[str, Any], plan_ids: set[str]
) -> tuple[str, str, list[Op], Any, str]:
    task_id = _record_id(key, f)
    description = f.get("description")
    if not isinstance(description, str):
        raise ValueError("field 'description' is missing")
    tags = f.get("tags") or []
    tags = json.loads(tags) if isinstance(tags, str) else tags
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("field 'tags' is not a list of strings")
    created = _time(f, "created_at")
    plans = [t[5:] for t in tags if t.startswith("plan:") and t[5:] not in plan_ids]
    plan_id = plans[0] if plans else None  # `tt sync push` then finds it: no duplicate
    task = Task(
        id=task_id,
        description=description,
        state=TaskState.parse(_text(f, "state") or "pending"),
        assigned_to=_uuid(f, "assigned_to"),
        created_at=created,
        updated_at=_time(f, "updated_at", created),
        completed_at=_time(f, "completed_at", None),
        result=_text(f, "result"),
        parent_id=_uuid(f, "parent_id"),
        tags=tuple(tags),
        started_at=_time(f, "started_at", None),
        plan_id=plan_id,
    )
    score = str(parse_time(created).timestamp())
    ops: list[Op] = [["ZADD", town.keys.tasks, score, task_id]]
    if plan_id:
        plan_ids.add(plan_id)
        ops.append(["HSETNX", town.keys.plan_ids, plan_id, task_id])
    return town.keys.task(task_id), dumps(task), ops, [], ""


async def _inboxes(town: Town, report: MigrationReport) -> None:
    """Inbox and urgent lists, merged per agent (urgent first), each message checked."""
    owners: dict[str, list[str]] = {}
    for kind in ("urgent", "inbox"):
        for key in await old_keys(town, kind):
            owners.setdefault(key.split(":")[2], []).append(key)
    for agent_id, keys in sorted(owners.items()):
        messages: list[str] = []
        for key in keys:
            for n, raw in enumerate(await _read_list(town, key, report)):
                try:
                    message = loads(Message, raw, where=f"{key}[{n}]")
                except MalformedRecordError as exc:
                    report.malformed.append((f"{key}[{n}]", str(exc).rstrip(".")))
                    continue
                if key.startswith("tt:urgent:"):
                    message = attrs.evolve(message, priority=Priority.URGENT)
                messages.append(dumps(message))
        old, target = " + ".join(keys), town.keys.inbox(agent_id)
        if not messages:
            continue
        if await admin.exists(town.store, target):
            report.skipped.append((old, f"{target} already exists"))
            continue
        if not report.dry_run:
            ops: list[Op] = [["RPUSH", target, *messages], ["PUBLISH", town.keys.wake, agent_id]]
            try:
                await town.store.apply(target, ops=ops, guards=[(["EXISTS", target], 0)])
            except GuardFailed:
                report.skipped.append((old, f"{target} already exists"))
                continue
        report.migrated.append((old, target))


async def _read_list(town: Town, key: str, report: MigrationReport) -> list[str]:
    if await admin.key_type(town.store, key) != "list":
        report.malformed.append((key, "not a list"))
        return []
    return await indexes.raw_list(town.store, key)


async def _backlog(town: Town, report: MigrationReport) -> None:
    """Append the old backlog's pending tasks to the town's backlog (no duplicates)."""
    if not await admin.exists(town.store, OLD_BACKLOG):
        return
    ids = await _read_list(town, OLD_BACKLOG, report)
    present = set(await indexes.backlog_ids(town.store))
    coming = {old.split(":")[2] for old, _ in report.migrated if old.startswith("tt:task:")}
    add: list[str] = []
    for task_id in dict.fromkeys(ids):
        if task_id in present:
            continue
        raw = await town.store.get_raw(town.keys.task(task_id)) if is_uuid(task_id) else None
        if raw is None and not (report.dry_run and task_id in coming):
            report.skipped.append((f"{OLD_BACKLOG}[{task_id}]", "no such task in the town"))
            continue
        if raw is not None and not _pending(raw):
            report.skipped.append((f"{OLD_BACKLOG}[{task_id}]", "the task is not pending"))
            continue
        add.append(task_id)
    if add and not report.dry_run:
        await town.store.run_ops(
            [["RPUSH", town.keys.backlog, *add], ["PUBLISH", town.keys.wake, "backlog"]]
        )
    if add:
        report.migrated.append((OLD_BACKLOG, town.keys.backlog))


def _pending(raw: str) -> bool:
    try:
        return loads(Task, raw).state is TaskState.PENDING
    except MalformedRecordError:
        return False


# -- field readers: ValueError names the field --------------------------------------------


def _record_id(key: str, f: dict[str, Any]) -> str:
    key_id = key.split(":")[2]
    if (_text(f, "id") or key_id).lower() != key_id:
        raise ValueError(f"field 'id' does not match the key's id {key_id}")
    return key_id


def _text(f: dict[str, Any], name: str) -> str | None:
    value = f.get(name)
    return None if value is None or value == "" else str(value)


def _uuid(f: dict[str, Any], name: str) -> str | None:
    value = _text(f, name)
    if value is not None and not is_uuid(value.lower()):
        raise ValueError(f"field {name!r} is not a UUID: {value!r}")
    return value.lower() if value else None


def _time(f: dict[str, Any], name: str, default: str | None = "now") -> Any:
    value = _text(f, name)
    if value is None:
        return now() if default == "now" else default
    try:
        return format_time(parse_time(value))
    except ValueError:
        raise ValueError(f"field {name!r} is not a timestamp: {value!r}") from None


def _int(f: dict[str, Any], name: str) -> int:
    try:
        return int(f.get(name) or 0)
    except ValueError:
        raise ValueError(f"field {name!r} is not a number") from None
