"""Rust Tinytown compatibility through the Python API (services/legacy.py and
``migrate_hashes``), against the real test Redis."""

from __future__ import annotations

import uuid

import pytest

from tinytown.model import Agent, AgentState, TaskState
from tinytown.services import legacy
from tinytown.services import migrate as migration
from tinytown.services.config import BUILTIN_CLIS
from tinytown.services.legacy import LegacyRecordError, preset_for, url_with_password
from tinytown.services.town import Town

STAMP = "2025-01-02T03:04:05.123456789+00:00"


async def hset(town: Town, key: str, **fields: str) -> None:
    await town.redis.execute("HSET", key, *[x for pair in fields.items() for x in pair])


@pytest.mark.parametrize(
    ("cli", "preset"),
    [
        ("codex", "codex"),
        ("codex --dangerously-bypass-approvals-and-sandbox", "codex"),
        ("codex exec --dangerously-bypass-approvals-and-sandbox", "codex"),
        ("claude --print --dangerously-skip-permissions", "claude"),
        ("claude  --print", "claude"),
        ("gh copilot", "copilot"),
        (BUILTIN_CLIS["codex-mini"], "codex-mini"),
        ("claude --model opus", "claude --model opus"),  # a raw command stays raw
        ("my-tool --fast", "my-tool --fast"),
        ("unbalanced 'quote", "unbalanced 'quote"),
    ],
)
def test_legacy_cli_strings_map_to_presets(cli: str, preset: str) -> None:
    assert preset_for(cli, BUILTIN_CLIS) == preset


def test_tinytown_redis_password_goes_into_urls_without_one() -> None:
    env = {"TINYTOWN_REDIS_PASSWORD": "s3cr/t"}
    assert url_with_password("redis://h:1/0", env) == "redis://:s3cr%2Ft@h:1/0"
    assert url_with_password("redis://u@h:1", env) == "redis://u:s3cr%2Ft@h:1"
    assert url_with_password("redis://:p@h:1", env) == "redis://:p@h:1"  # has one
    assert url_with_password("unix:///s.sock", env) == "unix:///s.sock?password=s3cr%2Ft"
    assert url_with_password("unix:///s.sock?db=1", env) == "unix:///s.sock?db=1&password=s3cr%2Ft"
    assert url_with_password("redis://h", {}) == "redis://h"
    assert url_with_password(None, env) is None


def test_agent_id_from_env() -> None:
    agent_id = str(uuid.uuid4())
    assert legacy.agent_id_from_env({"TINYTOWN_AGENT_ID": agent_id.upper()}) == agent_id
    assert legacy.agent_id_from_env({"TINYTOWN_AGENT_ID": "bob"}) is None
    assert legacy.agent_id_from_env({}) is None


def test_display_label_as_rust_prints_it() -> None:
    agent = Agent(id=str(uuid.uuid4()), name="w1", nickname="Olive", cli="claude")
    assert legacy.display_label(agent) == "Olive [w1]"
    backend = Agent(id=agent.id, name="w1", nickname="Olive", cli="claude", role_id="backend")
    assert legacy.display_label(backend) == "Olive [backend]"
    assert legacy.matches_label(backend, " olive   [Backend] ")
    assert not legacy.matches_label(backend, "Olive [w1]")


async def test_hash_records_are_read_and_refused_for_changes(town: Town) -> None:
    agent_id, task_id = str(uuid.uuid4()), str(uuid.uuid4())
    key = town.keys.agent(agent_id)
    agent_fields = {"id": agent_id, "name": "rusty", "state": "working", "cli": "claude"}
    agent_fields |= {"nickname": "Mabel", "role_id": "tester", "created_at": STAMP}
    await hset(town, key, **agent_fields)
    task_fields = {"id": task_id, "description": "Rust task", "state": "in_flight"}
    task_fields |= {"assigned_to": agent_id, "tags": '["a"]', "created_at": STAMP}
    await hset(town, town.keys.task(task_id), **task_fields)
    # A nickname of its own: a random pick could be "Mabel" too (legacy hashes are not in
    # the nickname index), and "Mabel" below must name the legacy agent alone.
    mine = await town.agents.spawn("mine", nickname="Ottoline")

    assert {a.name for a in await town.agents.list(legacy_records=True)} == {"rusty", "mine"}
    assert {a.name for a in await town.agents.list(legacy_records=False)} == {"mine"}
    assert {a.name for a in await town.agents.list()} == {"mine"}  # show_legacy: off
    assert task_id not in {t.id for t in await town.tasks.list()}
    town.agents.show_legacy = town.tasks.show_legacy = True  # as read-only commands do
    assert {a.name for a in await town.agents.list()} == {"rusty", "mine"}
    assert task_id in {t.id for t in await town.tasks.list()}
    for ref in ("rusty", agent_id, "Mabel", "Mabel [tester]", agent_id[:6]):
        assert (await town.agents.resolve(ref)).id == agent_id
    assert (await town.agents.get(agent_id)).state is AgentState.WORKING
    task = await town.tasks.get(task_id)
    assert task.state is TaskState.RUNNING and task.tags == ("a",)
    assert any("tt migrate --hash" in w for w in town.store.warnings)
    with pytest.raises(LegacyRecordError, match="tt migrate --hash"):
        await town.agents.record_offline(agent_id, "kill")
    assert await town.redis.execute("HGET", key, "state") == "working"
    assert (await town.agents.resolve("mine")).id == mine.id


async def test_migrate_hashes_converts_atomically_and_refuses_a_changed_hash(town: Town) -> None:
    agent_id = str(uuid.uuid4())
    key = town.keys.agent(agent_id)
    await hset(town, key, id=agent_id, name="racer", state="idle", cli="codex", created_at=STAMP)
    preview = await migration.migrate_hashes(town, dry_run=True)
    assert preview.migrated == [(key, key)]
    assert await town.redis.execute("TYPE", key) == "hash"

    # The conversion's guards hold the hash as read: a write in between aborts it.
    (fields,) = await migration.admin.hashes(town.store, [key])
    guards = migration._hash_guards(key, fields)
    await town.redis.execute("HSET", key, "state", "working")
    assert not await migration.admin.guards_hold(town.store, guards)

    report = await migration.migrate_hashes(town)
    assert report.migrated == [(key, key)] and report.skipped == []
    agent = await town.store.get(Agent, key)
    assert agent is not None and agent.state is AgentState.WORKING  # the newest content
    assert await town.agents.resolve("racer") == agent
    assert await migration.legacy_count(town) == 0


def test_a_rust_config_names_its_tcp_redis() -> None:
    central = {"redis": {"use_socket": False, "host": "10.0.0.5", "port": 16379}}
    assert legacy.rust_redis_url(central, {}) == "redis://10.0.0.5:16379"
    central["redis"]["password"] = "tt_ab/c"
    assert legacy.rust_redis_url(central, {}) == "redis://:tt_ab%2Fc@10.0.0.5:16379"
    env = {"TINYTOWN_REDIS_PASSWORD": "override"}
    assert legacy.rust_redis_url(central, env) == "redis://:override@10.0.0.5:16379"
    tls = {"redis": {"use_socket": False, "tls_enabled": True}}
    assert legacy.rust_redis_url(tls, {}) == "rediss://127.0.0.1:6379"
    assert legacy.rust_redis_url({"redis": {"use_socket": True, "port": 1}}, {}) is None
    assert legacy.rust_redis_url({"name": "ours", "redis": {"url": ""}}, {}) is None


async def test_tinytown_agent_name_resolves_any_reference(town: Town) -> None:
    agent = await town.agents.spawn("named", nickname="Zelda")
    for ref in ("named", "Zelda", "Zelda [named]"):
        got = await legacy.agent_id_from_name(town.agents, {"TINYTOWN_AGENT_NAME": ref})
        assert got == agent.id
    for ref in ("nobody", "supervisor", ""):
        assert await legacy.agent_id_from_name(town.agents, {"TINYTOWN_AGENT_NAME": ref}) is None
