"""tt plan, sync push|pull, save, restore, migrate (through the real command line)."""

from __future__ import annotations

import tomllib
import uuid
from pathlib import Path

from tests.cli.clihelp import ok, ok_json, user_error
from tinytown.model import TaskState
from tinytown.services.config import TownConfig
from tinytown.services.town import Town


async def test_plan_init_push_twice_list_and_pull(tt, town: Town, town_dir: Path) -> None:
    await town.agents.spawn("worker-1")
    assert ok(tt("plan", "--init")) == "Wrote tasks.toml; edit it, then run 'tt sync push'.\n"
    assert "already exists" in user_error(tt("plan", "--init"))
    plan = town_dir / "tasks.toml"
    plan.write_text(plan.read_text().replace('# agent = "worker-1"', 'agent = "worker-1"'))

    first = ok_json(tt("sync", "push", "--json"))
    assert first["counts"] == {
        "created": 2,
        "updated": 0,
        "assigned": 1,
        "backlogged": 1,
        "finished": 0,
        "unchanged": 0,
    }
    assert ok(tt("sync", "push")) == (
        "Pushed tasks.toml: 0 created, 0 updated, 0 assigned, 0 backlogged, 0 finished,"
        " 2 unchanged.\n"
    )
    listed = ok_json(tt("plan", "--json"))
    assert [(e["id"], e["task"]["id"], e["task"]["state"]) for e in listed] == [
        ("design", first["task_ids"]["design"], "pending"),
        ("build", first["task_ids"]["build"], "assigned"),
    ]
    assert listed[1]["task"]["parent_id"] == first["task_ids"]["design"]
    assert len(await town.tasks.list()) == 2

    await town.tasks.complete(first["task_ids"]["build"], "done")
    out = ok(tt("sync", "pull"))
    assert out == "Pulled into tasks.toml: 2 updated, 0 added, 0 unchanged.\n"
    rows = {t["id"]: t for t in tomllib.loads(plan.read_text())["tasks"]}
    assert (rows["build"]["status"], rows["build"]["agent"]) == ("completed", "worker-1")
    assert rows["design"]["status"] == "pending" and rows["build"]["parent"] == "design"


async def test_bad_files_are_rejected_and_change_nothing(tt, town: Town, town_dir: Path) -> None:
    plan = town_dir / "tasks.toml"
    good = '[[tasks]]\nid = "a"\ndescription = "A"\n\n[[tasks]]\nid = "b"\ndescription = "B"\n'
    plan.write_text(good + 'stauts = "done"\n')
    message = user_error(tt("sync", "push"))
    assert message == "tasks.toml:8: task 'b': unknown field 'stauts' (did you mean 'status'?)."
    plan.write_text(good + 'agent = "ghost"\n')
    assert user_error(tt("sync", "push")).startswith("tasks.toml:8: task 'b': field 'agent': ")
    assert await town.tasks.list() == []
    assert await town.redis.execute("EXISTS", town.keys.plan_ids) == 0
    assert "No plan file" in user_error(tt("sync", "push", "--file", "missing.toml"))


async def test_save_restore_and_migrate(tt, town: Town, town_dir: Path, tmp_path: Path) -> None:
    task = await town.tasks.create("Keep me")
    out = ok(tt("save", "--output", str(tmp_path / "snap.json")))
    assert out.startswith(f"Saved 4 keys of town {town.name} to {tmp_path / 'snap.json'}.\nAOF: ")

    other = tmp_path / "other"
    other.mkdir()
    TownConfig.create(other, f"t-{uuid.uuid4().hex[:12]}")
    restored = ok_json(tt("restore", "--input", str(tmp_path / "snap.json"), "--json", cwd=other))
    assert restored == {"keys": 4, "source_town": town.name, "replaced": 0}
    async with await Town.connect(other) as copy:
        assert (await copy.tasks.get(task.id)).state is TaskState.PENDING
        again = tt("restore", "--input", str(tmp_path / "snap.json"), cwd=other)
        assert "use --force" in user_error(again)
        ok(tt("restore", "--input", str(tmp_path / "snap.json"), "--force", cwd=other))
        await copy.redis.execute("DEL", *[k async for k in _keys(copy)])

    preview = ok(tt("migrate", "--dry-run"))
    assert "Dry run: " in preview and "would migrate" in preview


async def _keys(town: Town):  # type: ignore[no-untyped-def]
    cursor = "0"
    while True:
        cursor, batch = await town.redis.execute("SCAN", cursor, "MATCH", town.keys.pattern)
        for key in batch:
            yield key
        if cursor == "0":
            return
