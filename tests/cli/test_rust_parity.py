"""Rust Tinytown parity through the real command line (issue 15): a Rust 0.10 town's
hash-format records are seen and converted, old global keys are moved, legacy CLI
strings, ``TINYTOWN_*`` variables and display labels work as in Rust.

A Rust-format town is built by writing hashes with the test Redis (as Rust 0.10 does:
flat string fields, ``+00:00`` stamps, tags as a JSON array string)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

from tests.cli.clihelp import ok, ok_json, user_error
from tests.conftest import SCRIPTED_AGENT
from tinytown.model import Agent, Message, Task, loads
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.town import Town

STAMP = "2025-01-02T03:04:05.123456789+00:00"
CODEX_LEGACY = "codex --dangerously-bypass-approvals-and-sandbox"


async def rust_agent(town: Town, name: str, **extra: str) -> str:
    agent_id = str(uuid.uuid4())
    fields = {
        "id": agent_id,
        "name": name,
        "agent_type": "worker",
        "state": "idle",
        "cli": CODEX_LEGACY,
        "created_at": STAMP,
        "last_heartbeat": STAMP,
        "last_active_at": STAMP,
        "tasks_completed": "2",
        "rounds_completed": "5",
        "spawn_mode": "fresh",
        **extra,
    }
    await town.redis.execute("HSET", town.keys.agent(agent_id), *sum(fields.items(), ()))
    return agent_id


async def rust_task(town: Town, description: str, **extra: str) -> str:
    task_id = str(uuid.uuid4())
    fields = {
        "id": task_id,
        "description": description,
        "state": "pending",
        "created_at": STAMP,
        "updated_at": STAMP,
        "tags": '["backend"]',
        **extra,
    }
    await town.redis.execute("HSET", town.keys.task(task_id), *sum(fields.items(), ()))
    return task_id


async def test_a_rust_town_is_seen_used_and_converted(tt, town: Town) -> None:
    agent_id = await rust_agent(town, "rustagent", nickname="Olive", role_id="backend")
    task_id = await rust_task(town, "Port the API", state="assigned", assigned_to=agent_id)
    ours = await town.agents.spawn("ours")
    ours_raw = await town.store.get_raw(town.keys.agent(ours.id))

    listed = tt("list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {a["name"]: a for a in json.loads(listed.stdout)}
    assert rows["rustagent"]["id"] == agent_id and rows["rustagent"]["state"] == "idle"
    assert rows["rustagent"]["cli"] == "codex"  # the legacy command line maps to its preset
    assert "Rust Tinytown's hash format" in listed.stderr
    assert "tt migrate --hash" in listed.stderr

    tasks = tt("tasks", "--json")
    assert tasks.returncode == 0, tasks.stderr
    assert task_id in tasks.stdout and "tt migrate --hash" in tasks.stderr
    status = tt("status")
    assert status.returncode == 0, status.stderr
    assert "rustagent" in status.stdout

    # Sends by name and by Rust's display label reach the Rust agent's inbox.
    for ref in ("rustagent", "Olive [backend]", "olive  [BACKEND]"):
        sent = tt("send", ref, f"hello via {ref}")
        assert sent.returncode == 0, sent.stderr
    inbox = await town.redis.execute("LRANGE", town.keys.inbox(agent_id), 0, -1)
    assert [loads(Message, m).text for m in inbox] == [
        "hello via rustagent",
        "hello via Olive [backend]",
        "hello via olive  [BACKEND]",
    ]

    # A change to a hash record is refused clearly, and changes nothing.
    refused = tt("kill", "rustagent")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "tt: " in refused.stderr and "tt migrate --hash" in refused.stderr
    assert await town.redis.execute("TYPE", town.keys.agent(agent_id)) == "hash"
    assert await town.redis.execute("HGET", town.keys.agent(agent_id), "state") == "idle"

    # Dry run: lists, changes nothing.
    preview = ok(tt("migrate", "--hash", "--dry-run"))
    assert f"would convert {town.keys.agent(agent_id)}" in preview
    assert f"would convert {town.keys.task(task_id)}" in preview
    assert "Dry run: 2 would convert, 0 skipped, 0 malformed." in preview
    assert await town.redis.execute("TYPE", town.keys.agent(agent_id)) == "hash"
    assert await town.redis.execute("TYPE", town.keys.task(task_id)) == "hash"

    out = ok(tt("migrate", "--hash"))
    assert "2 converted, 0 skipped, 0 malformed." in out and "redis-cli" not in out
    agent = await town.store.get(Agent, town.keys.agent(agent_id))
    assert agent is not None and (agent.name, agent.nickname, agent.role_id) == (
        "rustagent",
        "Olive",
        "backend",
    )
    assert (agent.cli, agent.tasks_completed, agent.rounds_completed) == ("codex", 2, 5)
    task = await town.store.get(Task, town.keys.task(task_id))
    assert task is not None and task.assigned_to == agent_id and task.tags == ("backend",)
    assert await town.store.get_raw(town.keys.agent(ours.id)) == ours_raw  # left alone
    assert (await town.agents.resolve("rustagent")).id == agent_id  # indexed by name
    assert task_id in [t.id for t in await town.tasks.list()]  # indexed
    listed = ok_json(tt("list", "--json"))  # no more legacy warning (ok: stderr empty)
    assert {a["name"] for a in listed} == {"ours", "rustagent"}
    assert ok(tt("migrate", "--hash")).endswith("0 converted, 0 skipped, 0 malformed.\n")


async def test_commands_that_change_what_they_list_leave_hash_records_alone(tt, town: Town) -> None:
    stopped = await rust_agent(town, "deadone", state="stopped")
    working = await rust_agent(town, "liveone", state="working")
    task_id = await rust_task(town, "x", state="assigned", assigned_to=stopped)
    for args in (("recover",), ("prune",), ("reclaim", "--to-backlog"), ("recover", "--dry-run")):
        result = tt(*args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert "WRONGTYPE" not in result.stderr and "liveone" not in result.stdout
    assert await town.redis.execute("HGET", town.keys.agent(stopped), "state") == "stopped"
    assert await town.redis.execute("HGET", town.keys.agent(working), "state") == "working"
    assert await town.redis.execute("HGET", town.keys.task(task_id), "state") == "assigned"


async def test_migrate_hash_never_overwrites_and_keeps_malformed(tt, town: Town) -> None:
    await town.agents.spawn("twin")
    clash = await rust_agent(town, "twin")
    bad = await rust_agent(town, "broken", created_at="yesterday")
    result = tt("migrate", "--hash")
    out = result.stdout
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert f"malformed {town.keys.agent(bad)}: field 'created_at'" in result.stderr
    assert f"skipped {town.keys.agent(clash)}: the town already has an agent named 'twin'" in out
    assert "0 converted, 1 skipped, 1 malformed." in out
    assert await town.redis.execute("TYPE", town.keys.agent(clash)) == "hash"
    assert await town.redis.execute("TYPE", town.keys.agent(bad)) == "hash"
    result = tt("migrate", "--hash", "--json")
    report = json.loads(result.stdout)
    assert [m["old"] for m in report["malformed"]] == [town.keys.agent(bad)]


async def test_rust_urgent_lists_join_the_inbox(tt, town: Town) -> None:
    agent_id = await rust_agent(town, "hasty")
    urgent = town.keys.prefix + f"urgent:{agent_id}"
    message = {
        "id": str(uuid.uuid4()),
        "from": SUPERVISOR_ID,
        "to": agent_id,
        "type": "task",
        "description": "now!",
        "priority": "normal",
        "created_at": "2025-01-02T03:04:05Z",
        "correlation_id": None,
    }
    await town.redis.execute("LPUSH", urgent, json.dumps(message))
    ok(tt("migrate", "--hash"))
    assert await town.redis.execute("EXISTS", urgent) == 0
    inbox = await town.redis.execute("LRANGE", town.keys.inbox(agent_id), 0, -1)
    assert [(loads(Message, m).text, loads(Message, m).priority.value) for m in inbox] == [
        ("now!", "urgent")
    ]


async def test_migrate_moves_old_global_keys_and_keep_old_keeps_them(tt, town: Town) -> None:
    moved, kept = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        for task_id in (moved, kept):
            await town.redis.execute(
                "HSET", f"tt:task:{task_id}", "id", task_id, "description", "old", "tags", "[]"
            )
        await town.redis.execute("DEL", f"tt:task:{kept}")
        out = ok(tt("migrate"))
        assert f"migrated tt:task:{moved} -> {town.keys.task(moved)}" in out
        assert "Removed 1 old key." in out and "redis-cli" not in out
        assert await town.redis.execute("EXISTS", f"tt:task:{moved}") == 0
        assert (await town.tasks.get(moved)).description == "old"

        await town.redis.execute(
            "HSET", f"tt:task:{kept}", "id", kept, "description", "kept", "tags", "[]"
        )
        out = ok(tt("migrate", "--keep-old"))
        assert f"Kept 1 old key (--keep-old): tt:task:{kept}" in out and "redis-cli" not in out
        assert await town.redis.execute("EXISTS", f"tt:task:{kept}") == 1
        assert (await town.tasks.get(kept)).description == "kept"
        assert "--keep-old" in user_error(tt("migrate", "--hash", "--keep-old"), 2)
    finally:
        await town.redis.execute("DEL", f"tt:task:{moved}", f"tt:task:{kept}")


async def test_legacy_default_cli_command_line_maps_to_its_preset(
    tt, town: Town, town_dir: Path
) -> None:
    command = f"{sys.executable} {SCRIPTED_AGENT}"  # the `scripted` preset's own command
    ok(tt("config", "default_cli", command))
    spawned = tt("spawn", "mapped", "--json")
    assert spawned.returncode == 0, spawned.stderr
    assert (await town.agents.resolve("mapped")).cli == "scripted"


async def test_tinytown_agent_id_is_who_acts(tt, tt_env, town: Town, town_dir: Path) -> None:
    import subprocess

    sender = await town.agents.spawn("sender")
    target = await town.agents.spawn("target")
    env = {**tt_env, "TINYTOWN_AGENT_ID": sender.id}
    result = subprocess.run(
        [sys.executable, "-m", "tinytown", "send", "target", "from rust env"],
        cwd=town_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    env = {**tt_env, "TINYTOWN_AGENT_NAME": "sender"}  # Rust's fallback: the name
    result = subprocess.run(
        [sys.executable, "-m", "tinytown", "send", "target", "by name"],
        cwd=town_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    inbox = await town.redis.execute("LRANGE", town.keys.inbox(target.id), 0, -1)
    assert [loads(Message, m).sender for m in inbox] == [sender.id, sender.id]


async def test_tinytown_redis_password_is_used(tt_env, town: Town, town_dir: Path) -> None:
    """An external Redis URL without a password gets TINYTOWN_REDIS_PASSWORD (an ACL user
    of the test server proves which password was sent)."""
    import subprocess

    user, password = f"h11-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await town.redis.execute("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all")
    try:
        base = tt_env["REDIS_URL"]
        url = f"{base}{'&' if '?' in base else '?'}username={user}"

        def run(secret: str) -> subprocess.CompletedProcess[str]:
            env = {**tt_env, "REDIS_URL": url, "TINYTOWN_REDIS_PASSWORD": secret}
            return subprocess.run(
                [sys.executable, "-m", "tinytown", "list"],
                cwd=town_dir,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        assert run(password).returncode == 0, run(password).stderr
        wrong = run("not-the-password")
        assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    finally:
        await town.redis.execute("ACL", "DELUSER", user)


def test_a_rust_tinytown_toml_reaches_its_tcp_redis(tt_in, tmp_path: Path) -> None:
    """Rust's default config (central Redis: ``use_socket = false``, host, port, password)
    is where the town's data is: tt goes there instead of starting an embedded server."""
    root = tmp_path / "rust-town"
    root.mkdir()
    (root / "tinytown.toml").write_text(
        'name = "rusttown-main"\n'
        f'default_cli = "{CODEX_LEGACY}"\n'
        "use_central_redis = true\n\n"
        '[redis]\nuse_socket = false\nhost = "127.0.0.1"\nport = 1\npassword = "tt_secret"\n\n'
        '[agent_clis.claude]\nname = "claude"\ncommand = "claude --print"\n'
    )
    result = tt_in("list", cwd=root, env={"REDIS_URL": None})
    message = user_error(result)
    assert "redis://127.0.0.1:1" in message and "tt_secret" not in message
    assert not (root / ".tt" / "redis.sock").exists()
