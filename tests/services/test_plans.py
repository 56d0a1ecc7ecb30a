"""The plan file and ``sync push|pull`` through the services, against a real Redis."""

from __future__ import annotations

import json
import tomllib
import uuid
from pathlib import Path

import pytest

from tinytown.errors import (
    AlreadyExistsError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
)
from tinytown.model import Message, Query, TaskState, loads
from tinytown.services import persistence, plans
from tinytown.services.config import TownConfig
from tinytown.services.planfile import TEMPLATE, parse_plan
from tinytown.services.town import Town
from tinytown.store.admin import scan

PLAN = """\
# my plan
[meta]
description = "demo"

[[tasks]]
id = "design"
description = "Write the design"
tags = ["design"]

[[tasks]]
id = "api"
description = "Build the API"
parent = "design"
agent = "worker-1"

[[tasks]]
id = "docs"
description = "Write the docs"
status = "completed"
"""


async def counts(town: Town) -> tuple[int, int, int, int]:
    """(tasks, backlog entries, messages in worker-1's inbox, events)."""
    agent = await town.agents.resolve("worker-1")
    replies = await town.redis.pipeline(
        [
            ["ZCARD", town.keys.tasks],
            ["LLEN", town.keys.backlog],
            ["LLEN", town.keys.inbox(agent.id)],
            ["XLEN", town.keys.events],
        ]
    )
    return tuple(replies)  # type: ignore[return-value]


@pytest.fixture
async def planned(town: Town, town_dir: Path) -> Path:
    await town.spawn_agent("worker-1", "scripted")
    path = town_dir / "tasks.toml"
    path.write_text(PLAN)
    return path


async def test_push_creates_assigns_backlogs_and_links(town: Town, planned: Path) -> None:
    report = await plans.push(town, planned)
    assert report.counts() == {
        "created": 3,
        "updated": 0,
        "assigned": 1,
        "backlogged": 1,
        "finished": 1,
        "unchanged": 0,
    }
    ids = report.task_ids
    design, api, docs = [await town.tasks.get(ids[p]) for p in ("design", "api", "docs")]
    assert design.state is TaskState.PENDING and design.plan_id == "design"
    assert design.tags == ("design",)
    assert api.state is TaskState.ASSIGNED and api.parent_id == design.id
    assert docs.state is TaskState.COMPLETED
    backlog = [t.id for t in await town.backlog.list()]
    assert backlog == [design.id]
    worker = await town.agents.resolve("worker-1")
    raw = await town.redis.execute("LRANGE", town.keys.inbox(worker.id), 0, -1)
    messages = [loads(Message, m) for m in raw]
    assert [(m.type.value, getattr(m.body, "task_id", None)) for m in messages] == [
        ("task_assign", api.id)
    ]


async def test_second_push_changes_nothing(town: Town, planned: Path) -> None:
    first = await plans.push(town, planned)
    before = await counts(town)
    second = await plans.push(town, planned)
    assert second.task_ids == first.task_ids
    assert second.counts()["unchanged"] == 3
    assert sum(second.counts().values()) == 3
    assert await counts(town) == before  # same tasks, backlog, messages, and no events


async def test_push_updates_and_applies_terminal_status(town: Town, planned: Path) -> None:
    first = await plans.push(town, planned)
    text = planned.read_text().replace("Write the design", "Write a better design")
    text = text.replace('id = "api"\n', 'id = "api"\nstatus = "cancelled"\n')
    planned.write_text(
        text + '\n[[tasks]]\nid = "later"\ndescription = "Later"\nagent = "worker-1"\n'
    )
    report = await plans.push(town, planned)
    assert report.updated == ["design"] and report.finished == ["api"]
    assert report.created == ["later"] and report.assigned == ["later"]
    design = await town.tasks.get(first.task_ids["design"])
    assert design.description == "Write a better design"
    assert (await town.tasks.get(first.task_ids["api"])).state is TaskState.CANCELLED


async def test_pending_task_gets_assigned_when_file_names_agent(town: Town, planned: Path) -> None:
    first = await plans.push(town, planned)
    planned.write_text(PLAN.replace('tags = ["design"]', 'tags = ["design"]\nagent = "worker-1"'))
    report = await plans.push(town, planned)
    assert report.assigned == ["design"]
    task = await town.tasks.get(first.task_ids["design"])
    assert task.state is TaskState.ASSIGNED
    assert await town.backlog.list() == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            PLAN.replace('status = "completed"', 'stauts = "completed"'),
            "tasks.toml:19: task 'docs': unknown field 'stauts' (did you mean 'status'?).",
        ),
        (
            PLAN.replace('status = "completed"', 'status = "done"'),
            "tasks.toml:19: task 'docs': field 'status' is 'done'",
        ),
        (
            PLAN.replace('parent = "design"', 'parent = "nope"'),
            "tasks.toml:13: task 'api': field 'parent': no task 'nope' in this file.",
        ),
        (
            PLAN.replace('id = "docs"', 'id = "api"'),
            "tasks.toml:16: task 'api': duplicate id (first defined on line 10).",
        ),
        (
            PLAN.replace('description = "Build the API"\n', ""),
            "tasks.toml:10: task 'api': missing required field 'description'.",
        ),
        (
            PLAN.replace('"Write the design"', "Write the design"),
            "tasks.toml:7: invalid TOML: Invalid value.",
        ),
        (
            PLAN.replace('id = "design"', 'id = "de sign"'),
            "tasks.toml:6: task 'de sign': field 'id' must be",
        ),
        (
            PLAN.replace('id = "design"', 'id = "design\\n"'),
            "tasks.toml:6: task 'design\\n': field 'id' must be",
        ),
        (
            PLAN.replace('tags = ["design"]', 'parent = "api"'),
            "tasks.toml:8: task 'design': field 'parent': cycle design -> api -> design.",
        ),
    ],
)
async def test_malformed_file_names_line_and_field_and_changes_nothing(
    town: Town, planned: Path, text: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(planned.parent)
    planned.write_text(text)
    before = await counts(town)
    with pytest.raises(InvalidInputError) as caught:
        await plans.push(town, planned)
    assert expected in str(caught.value)
    assert await counts(town) == before


async def test_unknown_agent_is_rejected_before_anything_is_applied(
    town: Town, planned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(planned.parent)
    planned.write_text(PLAN.replace('agent = "worker-1"', 'agent = "nobody"'))
    before = await counts(town)
    with pytest.raises(InvalidInputError, match=r"tasks.toml:14: task 'api': field 'agent': No"):
        await plans.push(town, planned)
    assert await counts(town) == before


async def test_a_stopped_agent_is_refused_and_nothing_is_applied(town: Town, planned: Path) -> None:
    worker = await town.agents.resolve("worker-1")
    await town.lifecycle.apply_offline(worker.id, "kill")
    before = await counts(town)
    with pytest.raises(InvalidTransitionError, match="worker-1 is stopped and takes no work"):
        await plans.push(town, planned)
    assert await counts(town) == before


async def test_pull_writes_state_back_and_keeps_the_rest(town: Town, planned: Path) -> None:
    first = await plans.push(town, planned)
    await town.tasks.complete(first.task_ids["api"], "done")
    outside = await town.tasks.create("An ad-hoc task", tags=["x"])
    report = await plans.pull(town, planned)
    assert report.updated == ["design", "api"] and report.unchanged == ["docs"]
    assert report.added == []
    data = tomllib.loads(planned.read_text())
    assert planned.read_text().startswith("# my plan\n")
    assert data["meta"] == {"description": "demo"}
    rows = {t["id"]: t for t in data["tasks"]}
    assert rows["api"] == {
        "id": "api",
        "description": "Build the API",
        "parent": "design",
        "agent": "worker-1",
        "status": "completed",
    }
    assert rows["design"]["status"] == "pending" and "agent" not in rows["design"]
    assert outside.id not in planned.read_text()

    again = await plans.pull(town, planned)
    assert not again.written and again.unchanged == ["design", "api", "docs"]

    full = await plans.pull(town, planned, include_all=True)
    pid = f"task-{outside.id[:8]}"
    assert full.added == [pid]
    rows = {t["id"]: t for t in tomllib.loads(planned.read_text())["tasks"]}
    assert rows[pid]["description"] == "An ad-hoc task" and rows[pid]["tags"] == ["x"]
    # the adopted task now has its plan id: pushing the pulled file duplicates nothing
    tasks_before = await town.redis.execute("ZCARD", town.keys.tasks)
    report = await plans.push(town, planned)
    assert report.created == [] and report.task_ids[pid] == outside.id
    assert await town.redis.execute("ZCARD", town.keys.tasks) == tasks_before


async def test_pull_without_file(town: Town, town_dir: Path) -> None:
    with pytest.raises(NotFoundError):
        await plans.pull(town, town_dir / "tasks.toml")
    await town.tasks.create("Loose task")
    report = await plans.pull(town, town_dir / "tasks.toml", include_all=True)
    assert len(report.added) == 1
    assert plans.load_plan(town_dir / "tasks.toml").entries[0].description == "Loose task"


def test_template_is_a_valid_plan(tmp_path: Path) -> None:
    path = plans.write_template(tmp_path / "tasks.toml")
    assert [e.id for e in plans.load_plan(path).entries] == ["design", "build"]
    with pytest.raises(InvalidInputError, match="already exists"):
        plans.write_template(path)
    plans.write_template(path, force=True)
    assert parse_plan(path, TEMPLATE).entries[1].parent == "design"


# -- save and restore ---------------------------------------------------------------------


async def test_save_and_restore_into_another_town(
    town: Town, planned: Path, tmp_path: Path
) -> None:
    pushed = await plans.push(town, planned)
    await town.messages.send("worker-1", Query("Ready?"))
    report = await persistence.save(town)
    assert report.snapshot == town.root / ".tt" / "snapshot.json"
    assert report.aof is not None and report.keys >= 8
    snapshot = json.loads(report.snapshot.read_text())
    assert {e["key"] for e in snapshot["keys"]} >= {"tasks", "agents", "backlog", "plan_ids"}

    other_root = tmp_path / "other"
    other_root.mkdir()
    TownConfig.create(other_root, f"t-{uuid.uuid4().hex[:12]}")
    async with await Town.connect(other_root) as other:
        source_keys = await scan(town.store, town.keys.pattern)
        restored = await persistence.restore(other, report.snapshot)
        assert restored.keys == report.keys and restored.source_town == town.name
        assert sorted(await scan(town.store, town.keys.pattern)) == sorted(source_keys)
        worker = await other.agents.resolve("worker-1")
        assert worker == await town.agents.resolve("worker-1")
        assert await other.tasks.list() == await town.tasks.list()
        assert await other.backlog.list() == await town.backlog.list()
        inbox = other.keys.inbox(worker.id)
        assert await other.redis.execute("LRANGE", inbox, 0, -1) == await town.redis.execute(
            "LRANGE", town.keys.inbox(worker.id), 0, -1
        )
        assert await other.redis.execute("HGET", other.keys.meta, "name") == other.name
        # the plan mapping came along: pushing the same file there creates nothing
        again = await plans.push(other, planned)
        assert again.created == [] and again.task_ids == pushed.task_ids

        with pytest.raises(AlreadyExistsError):
            await persistence.restore(other, report.snapshot)
        await other.tasks.create("Only in the other town")
        forced = await persistence.restore(other, report.snapshot, force=True)
        assert forced.replaced > 0
        assert len(await other.tasks.list()) == len(await town.tasks.list())
        await other.redis.execute("DEL", *await scan(other.store, other.keys.pattern))


async def test_restore_rejects_a_bad_snapshot(town: Town, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    before = await scan(town.store, town.keys.pattern)
    for body in (
        "{",
        json.dumps({"format": "other"}),
        json.dumps(
            {
                "format": persistence.SNAPSHOT_FORMAT,
                "version": 1,
                "keys": [
                    {"key": "tasks", "type": "zset", "value": [["a", "1"]]},
                    {
                        "key": "events",
                        "type": "stream",
                        "value": [["5-0", {"a": "b"}], ["1-0", {}]],
                    },
                ],
            }
        ),
    ):
        path.write_text(body)
        with pytest.raises(InvalidInputError):
            await persistence.restore(town, path)
    with pytest.raises(NotFoundError):
        await persistence.restore(town, tmp_path / "missing.json")
    assert sorted(await scan(town.store, town.keys.pattern)) == sorted(before)


async def test_push_puts_a_pending_task_back_in_the_backlog_once(town: Town, planned: Path) -> None:
    first = await plans.push(town, planned)
    await town.redis.execute("DEL", town.keys.backlog)  # e.g. lost by hand
    report = await plans.push(town, planned)
    assert report.backlogged == ["design"] and "design" not in report.unchanged
    assert [t.id for t in await town.backlog.list()] == [first.task_ids["design"]]
    assert (await plans.push(town, planned)).backlogged == []
