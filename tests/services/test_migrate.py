"""``tt migrate`` through the service: old global keys into a town, against a real Redis.

The old keys (``tt:task:<uuid>`` …) are global, and the test Redis is shared: every test
uses fresh UUIDs, asserts only about its own keys, and deletes them at the end.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest

from tinytown.errors import NotFoundError
from tinytown.model import Agent, Message, Priority, Task, TaskState, loads
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.migrate import migrate
from tinytown.services.town import Town

RUST_STAMP = "2025-01-02T03:04:05.123456789+00:00"


class OldKeys:
    """Creates old-layout keys with raw commands and removes them afterwards."""

    def __init__(self, town: Town) -> None:
        self.town = town
        self.created: list[str] = []

    async def hset(self, key: str, **fields: str) -> str:
        args = [x for pair in fields.items() for x in pair]
        await self.town.redis.execute("HSET", key, *args)
        self.created.append(key)
        return key

    async def rpush(self, key: str, *values: str) -> str:
        await self.town.redis.execute("RPUSH", key, *values)
        self.created.append(key)
        return key

    async def values(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for key in self.created:
            kind = await self.town.redis.execute("TYPE", key)
            cmd = ["HGETALL", key] if kind == "hash" else ["LRANGE", key, 0, -1]
            out[key] = await self.town.redis.execute(*cmd)
        return out


@pytest.fixture
async def old(town: Town) -> AsyncIterator[OldKeys]:
    keys = OldKeys(town)
    try:
        yield keys
    finally:
        if keys.created:
            await town.redis.execute("DEL", *keys.created)


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def old_message(sender: str, to: str, **body: str) -> str:
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "from": sender,
            "to": to,
            **body,
            "priority": "normal",
            "created_at": "2025-01-02T03:04:05.123456789Z",
        }
    )


async def town_keys(town: Town) -> int:
    found, cursor = 0, "0"
    while True:
        cursor, batch = await town.redis.execute("SCAN", cursor, "MATCH", town.keys.pattern)
        found += len(batch)
        if cursor == "0":
            return found


async def test_dry_run_changes_nothing_and_real_run_converts(town: Town, old: OldKeys) -> None:
    agent_id, task_id, done_id, bad_id = ids(4)
    await old.hset(
        f"tt:agent:{agent_id}",
        id=agent_id,
        name="legacy",
        agent_type="worker",
        state="idle",
        cli="claude",
        created_at=RUST_STAMP,
        last_heartbeat=RUST_STAMP,
        tasks_completed="3",
        rounds_completed="7",
    )
    await old.hset(
        f"tt:task:{task_id}",
        id=task_id,
        description="Port the API",
        state="pending",
        created_at=RUST_STAMP,
        updated_at=RUST_STAMP,
        tags='["backend","plan:port-api"]',
    )
    await old.hset(
        f"tt:task:{done_id}",
        id=done_id,
        description="Old work",
        state="completed",
        assigned_to=agent_id,
        created_at=RUST_STAMP,
        updated_at=RUST_STAMP,
        completed_at=RUST_STAMP,
        result="Completed",
        tags="[]",
    )
    await old.hset(f"tt:task:{bad_id}", id=bad_id, description="x", created_at="yesterday")
    await old.rpush(
        f"tt:inbox:{agent_id}",
        old_message(SUPERVISOR_ID, agent_id, type="task_assign", task_id=task_id),
        "{not json",
    )
    await old.rpush(
        f"tt:urgent:{agent_id}", old_message(SUPERVISOR_ID, agent_id, type="query", question="?")
    )
    await old.rpush("tt:backlog", task_id, done_id)
    before_old = await old.values()
    before_town = await town_keys(town)

    preview = await migrate(town, dry_run=True)
    assert await town_keys(town) == before_town
    assert await old.values() == before_old
    assert (f"tt:task:{task_id}", town.keys.task(task_id)) in preview.migrated
    assert any(key == f"tt:task:{bad_id}" and "created_at" in why for key, why in preview.malformed)

    report = await migrate(town)
    assert {m for m in report.migrated if "backlog" not in m[0]} == {
        m for m in preview.migrated if "backlog" not in m[0]
    }
    # Moved: each migrated record's old key is gone; what could not move stays.
    after_old = await old.values()
    assert after_old[f"tt:agent:{agent_id}"] == [] and after_old[f"tt:task:{task_id}"] == []
    assert after_old[f"tt:task:{done_id}"] == []
    assert after_old[f"tt:task:{bad_id}"] == before_old[f"tt:task:{bad_id}"]  # malformed
    assert after_old[f"tt:urgent:{agent_id}"] == []
    assert after_old[f"tt:inbox:{agent_id}"] == before_old[f"tt:inbox:{agent_id}"]  # bad entry
    assert after_old["tt:backlog"] == [done_id]  # not pending: it could not move
    assert f"tt:task:{task_id}" in report.removed and f"tt:inbox:{agent_id}" in report.kept

    agent = await town.agents.resolve("legacy")
    assert agent.id == agent_id and agent.tasks_completed == 3 and agent.rounds_completed == 7
    assert agent.created_at == "2025-01-02T03:04:05.123456Z"
    task = await town.tasks.get(task_id)
    assert task.state is TaskState.PENDING and task.tags == ("backend", "plan:port-api")
    assert task.plan_id == "port-api"
    assert await town.redis.execute("HGET", town.keys.plan_ids, "port-api") == task_id
    done = await town.tasks.get(done_id)
    assert done.state is TaskState.COMPLETED and done.assigned_to == agent_id
    assert {t.id for t in await town.tasks.list()} == {task_id, done_id}  # indexed
    assert [t.id for t in await town.backlog.list()] == [task_id]
    inbox = await town.redis.execute("LRANGE", town.keys.inbox(agent_id), 0, -1)
    messages = [loads(Message, m) for m in inbox]
    assert [(m.type.value, m.priority) for m in messages] == [
        ("query", Priority.URGENT),
        ("task_assign", Priority.NORMAL),
    ]
    assert any(key == f"tt:inbox:{agent_id}[1]" for key, _ in report.malformed)
    with pytest.raises(NotFoundError):  # the malformed task was not written
        await town.tasks.get(bad_id)
    assert f"tt:task:{task_id}" in report.old_keys

    again = await migrate(town)  # idempotent: nothing left to move, nothing overwritten
    assert [m for m in again.migrated if m[0] != "tt:backlog"] == []
    assert [t.id for t in await town.backlog.list()] == [task_id]


async def test_keep_old_copies_and_leaves_the_old_keys(town: Town, old: OldKeys) -> None:
    agent_id, task_id = ids(2)
    await old.hset(f"tt:agent:{agent_id}", id=agent_id, name="keeper", state="idle")
    await old.hset(f"tt:task:{task_id}", id=task_id, description="Kept", state="pending", tags="[]")
    await old.rpush("tt:backlog", task_id)
    before_old = await old.values()
    report = await migrate(town, keep_old=True)
    assert await old.values() == before_old
    assert report.removed == [] and set(report.kept) >= {
        f"tt:agent:{agent_id}",
        f"tt:task:{task_id}",
        "tt:backlog",
    }
    assert (await town.agents.resolve("keeper")).id == agent_id
    assert [t.id for t in await town.backlog.list()] == [task_id]


async def test_a_record_changed_meanwhile_is_not_moved(town: Town, old: OldKeys) -> None:
    """The move's guards hold the old record as read: a change in between keeps it."""
    from tinytown.services import migrate as migration

    agent_id = ids(1)[0]
    key = await old.hset(f"tt:agent:{agent_id}", id=agent_id, name="racer", state="idle")
    _, unchanged = await migration._read_record(town, key)
    await town.redis.execute("HSET", key, "state", "working")  # a Rust loop writes
    assert not await migration.admin.guards_hold(town.store, unchanged)
    report = await migrate(town)  # reads afresh: moves the current content
    assert (await town.agents.resolve("racer")).state.value == "working"
    assert report.removed == [key]


async def test_existing_keys_are_not_overwritten(town: Town, old: OldKeys) -> None:
    handle = await town.spawn_agent("taken", "scripted")
    mine = await town.tasks.create("Already here")
    other_id = ids(1)[0]
    await old.hset(
        f"tt:task:{mine.id}", id=mine.id, description="Old text", state="failed", tags="[]"
    )
    await old.hset(f"tt:agent:{handle.id}", id=handle.id, name="taken", state="idle")
    await old.hset(f"tt:agent:{other_id}", id=other_id, name="taken", state="idle")
    report = await migrate(town)
    skipped = dict(report.skipped)
    assert "already exists" in skipped[f"tt:task:{mine.id}"]
    assert "already exists" in skipped[f"tt:agent:{handle.id}"]
    assert "named 'taken'" in skipped[f"tt:agent:{other_id}"]
    assert (await town.tasks.get(mine.id)).description == "Already here"
    assert await town.store.get(Agent, town.keys.agent(other_id)) is None
    assert await town.store.get(Task, town.keys.task(mine.id)) == mine
