"""tt init, down, status, towns, config, reset; and the errors every command shares."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.cli.clihelp import RunIn, ok, ok_json, parallel, user_error
from tinytown.services.town import Town, TownStoppedError
from tinytown.store.server import EmbeddedServer

LEASE = '{"id": "x", "host": "otherhost", "pid": 4242, "started": "2026-01-01T00:00:00Z"}'


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """A directory for a town on its own embedded Redis; the server is stopped afterwards."""
    root = tmp_path / "proj"
    root.mkdir()
    yield root
    EmbeddedServer(root / ".tt").stop()


async def test_init_status_towns_down_on_embedded_redis(
    tt_in: RunIn, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded: dict[str, str | None] = {"REDIS_URL": None}  # the town starts its own server
    monkeypatch.delenv("REDIS_URL")
    out = ok(tt_in("init", "--name", "demo-town", cwd=project, env=embedded))
    assert f"Town demo-town created at {project}." in out
    assert f"Redis: unix://{project}/.tt/redis.sock (embedded)." in out
    assert (project / "tinytown.toml").is_file()
    msg = user_error(tt_in("init", "--name", "other", cwd=project, env=embedded))
    assert "already town 'demo-town'" in msg

    status = ok_json(tt_in("status", "--json", cwd=project, env=embedded))
    assert status["town"] == "demo-town" and status["runtime"] is None
    assert status["redis_kind"] == "embedded" and status["agents"] == []
    towns = ok_json(tt_in("towns", "--json", cwd=project, env=embedded))
    assert [(t["name"], t["reachable"], t["agents"]) for t in towns] == [("demo-town", True, 0)]

    # A runtime holds the town: down asks it to stop first; one that never answers (here a
    # lease of another host) makes down fail, and the server keeps running.
    town = await Town.connect(project)
    try:
        await town.redis.execute("SET", town.keys.runtime, LEASE)
        msg = user_error(tt_in("down", "--timeout", "1", cwd=project, env=embedded))
        assert "did not answer the shutdown request within 1 s" in msg
        assert await town.redis.execute("PING") == "PONG"
        await town.redis.execute("DEL", town.keys.runtime)
    finally:
        await town.aclose()

    assert "Stopped Redis of town demo-town" in ok(tt_in("down", cwd=project, env=embedded))
    assert not EmbeddedServer(project / ".tt").is_running()
    towns = ok_json(tt_in("towns", "--json", cwd=project, env=embedded))
    assert towns[0]["reachable"] is False  # checked without starting the server again
    assert not EmbeddedServer(project / ".tt").is_running()
    assert "is not running and its Redis is stopped" in ok(tt_in("down", cwd=project, env=embedded))


async def test_read_only_commands_never_start_a_stopped_town(
    tt_in: RunIn, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded: dict[str, str | None] = {"REDIS_URL": None}
    monkeypatch.delenv("REDIS_URL")
    server = EmbeddedServer(project / ".tt")
    ok(tt_in("init", "--name", "quiet-town", cwd=project, env=embedded))
    ok(tt_in("backlog", "add", "first", cwd=project, env=embedded))
    assert "Stopped Redis of town quiet-town" in ok(tt_in("down", cwd=project, env=embedded))

    status = tt_in("status", cwd=project, env=embedded)
    assert status.returncode == 0 and status.stderr == ""
    assert status.stdout.startswith(f"Town quiet-town at {project}: stopped (its Redis is not")
    assert len(status.stdout.splitlines()) == 1
    data = ok_json(tt_in("status", "--json", cwd=project, env=embedded))
    assert data["stopped"] is True and data["runtime"] is None
    for command in (
        ["list"],
        ["tasks"],
        ["backlog"],
        ["inbox", "--all"],
        ["events"],
        ["history"],
        ["task", "show", "abc"],
        ["recover", "--dry-run"],
    ):
        msg = user_error(tt_in(*command, cwd=project, env=embedded))
        assert msg.startswith("Town quiet-town is stopped (its Redis is not running"), command
    assert "default_cli = " in ok(tt_in("config", cwd=project, env=embedded))
    assert "unreachable" in ok(tt_in("towns", cwd=project, env=embedded))
    with pytest.raises(TownStoppedError, match="Town quiet-town is stopped"):  # the API
        await Town.connect(project, start_server=False)
    assert not server.is_running()  # nothing above started it

    added = tt_in("backlog", "add", "second", cwd=project, env=embedded)  # a write starts it
    assert added.returncode == 0, added.stderr
    assert added.stderr == f"Started the town's Redis (unix://{project}/.tt/redis.sock).\n"
    assert server.is_running()
    tasks = ok_json(tt_in("tasks", "--json", cwd=project, env=embedded))
    assert [t["description"] for t in tasks] == ["first", "second"]  # the data was kept
    again = tt_in("backlog", "add", "third", cwd=project, env=embedded)
    assert again.returncode == 0 and again.stderr == ""  # said only when it was started


def test_down_with_external_redis_and_towns_table(tt_in: RunIn, tmp_path: Path) -> None:
    root = tmp_path / "ext"
    root.mkdir()
    assert "(external)" in ok(tt_in("init", cwd=root))
    assert "uses an external Redis; it keeps running" in ok(tt_in("down", cwd=root))
    table = ok(tt_in("towns", cwd=root)).splitlines()
    assert table[0].split() == ["NAME", "REDIS", "AGENTS", "PATH"]
    assert table[1].split() == ["ext", "reachable", "0", str(root)]


async def test_status_views(tt, town: Town, town_dir: Path) -> None:
    alice = await town.agents.spawn("alice", role="tester", max_rounds=4)
    await town.agents.spawn("bob", nickname="Zed")
    await town.tasks.assign("alice", "Build the API", tags=["api"])
    await town.backlog.add("Write the docs")
    done = await town.tasks.assign("bob", "Old job")
    await town.tasks.complete(done.id, "ok")
    logs = town_dir / ".tt" / "logs"
    logs.mkdir(parents=True)
    (logs / "alice.log").write_text("".join(f"line {i}\n" for i in range(10)))

    plain, deep, as_json = parallel(
        partial(tt, "status", "--tasks"),
        partial(tt, "status", "--deep"),
        partial(tt, "status", "--json", "--deep", "--tasks"),
    )
    out = ok(plain)
    assert f"Town:    {town.name}" in out
    assert "Runtime: not running" in out
    agents_part = out.split("\nTasks:")[0]
    rows = {line.split()[0]: line.split() for line in agents_part.splitlines() if line.strip()}
    assert rows["alice"][1:4] == [alice.nickname, "tester", "not"]  # running (no runtime)
    assert rows["alice"][-1] == "1"  # the task_assign message waits in its inbox
    assert "Tasks:   3 (1 pending, 1 assigned, 1 completed)" in out
    assert "Backlog: 1 task" in out

    assert "Tasks by agent:" in out
    by_agent = {
        line.split()[0]: line.split()[1:]
        for line in out.split("Tasks by agent:")[1].strip().splitlines()[1:]
    }
    assert by_agent == {
        "alice": ["0", "1", "0", "0", "0", "0"],
        "bob": ["0", "0", "0", "1", "0", "0"],
        "(unassigned)": ["1", "0", "0", "0", "0", "0"],
    }

    out = ok(deep)
    assert "alice (" in out and "rounds: 0/4" in out
    assert "inbox: 1 queued, 0 in flight" in out
    assert "line 9" in out and "line 5" in out and "line 4" not in out

    data = ok_json(as_json)
    assert data["tasks"] == {"assigned": 1, "pending": 1, "completed": 1}
    agent = next(a for a in data["agents"] if a["name"] == "alice")
    assert agent["inbox"] == 1 and agent["log_tail"][-1] == "line 9"
    assert data["tasks_by_agent"]["alice"] == {"assigned": 1}


def test_config_get_set_and_errors(tt, town_dir: Path) -> None:
    listing = ok(tt("config"))
    assert "default_cli = scripted" in listing
    assert "runtime.kill_grace = 1.0" in listing
    assert (
        "agent_clis.claude = claude --print --output-format json --dangerously-skip-permissions"
        in listing
    )
    assert ok(tt("config", "default_cli")) == "scripted\n"
    assert ok(tt("config", "runtime.round_timeout", "90")) == "runtime.round_timeout = 90.0\n"
    assert ok(tt("config", "agent_clis.echo", "echo hi")) == "agent_clis.echo = echo hi\n"
    data = ok_json(tt("config", "--json"))
    assert data["runtime.round_timeout"] == 90.0 and data["agent_clis.echo"] == "echo hi"
    saved = tomllib.loads((town_dir / "tinytown.toml").read_text())
    assert saved["runtime"]["round_timeout"] == 90.0
    before = (town_dir / "tinytown.toml").read_text()
    assert "Unknown config key 'nope'" in user_error(tt("config", "nope"))
    assert "needs a number" in user_error(tt("config", "runtime.round_timeout", "soon"))
    assert (town_dir / "tinytown.toml").read_text() == before


async def _town_keys(town: Town) -> set[str]:
    keys: set[str] = set()
    cursor = "0"
    while True:
        cursor, batch = await town.redis.execute("SCAN", cursor, "MATCH", town.keys.pattern)
        keys.update(batch)
        if cursor == "0":
            return keys


async def test_reset(tt, town: Town) -> None:
    await town.agents.spawn("alice")
    task = await town.tasks.assign("alice", "Build it")
    neighbour = f"tt:{town.name}x:task:1"  # another town whose name extends ours
    await town.redis.execute("SET", neighbour, "{}")
    keys = await _town_keys(town)

    result = tt("reset")
    assert user_error(result) == "Refusing to reset without --force."
    assert "Would delete" in result.stdout and "1 agent," in result.stdout
    assert await _town_keys(town) == keys

    out = ok(tt("reset", "--agents-only", "--force"))
    assert "Deleted 3 keys" in out  # the agent record, its inbox, the agent index
    assert await town.agents.list() == []
    assert (await town.tasks.get(task.id)).description == "Build it"

    await town.redis.execute("SET", town.keys.runtime, LEASE)
    assert "stop 'tt run' before a reset" in user_error(tt("reset", "--force"))
    await town.redis.execute("DEL", town.keys.runtime)

    assert "Deleted" in ok(tt("reset", "--force"))
    assert await _town_keys(town) == set()
    assert await town.redis.execute("GET", neighbour) == "{}"
    await town.redis.execute("DEL", neighbour)


def test_common_errors(tt, tt_in: RunIn, town_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    gone = {"REDIS_URL": f"unix://{tmp_path}/no-such-dir/redis.sock"}
    secret = {"REDIS_URL": "redis://user:s3cret@127.0.0.1:1/0"}
    no_town, t_before, t_after, down, with_secret, usage, version = parallel(
        partial(tt_in, "list", cwd=empty),
        partial(tt_in, "-t", str(town_dir), "list", cwd=empty),
        partial(tt_in, "list", "--town", str(town_dir), cwd=empty),
        partial(tt_in, "spawn", "alice", cwd=town_dir, env=gone),
        partial(tt_in, "list", cwd=town_dir, env=secret),
        partial(tt, "spawn"),
        partial(tt, "--version"),
    )
    msg = user_error(no_town)
    assert msg.startswith("No town at ") and "tt init" in msg

    # -t before or after the command name reaches the town from anywhere.
    empty_list = "No agents. Run 'tt spawn NAME' to create one.\n"
    assert ok(t_before) == empty_list
    assert ok(t_after) == empty_list

    msg = user_error(down)
    assert msg.startswith("Cannot reach Redis at unix://") and msg.endswith(".")
    assert "Cannot reach Redis" in user_error(with_secret) and "s3cret" not in with_secret.stderr

    assert "the following arguments are required: NAME" in user_error(usage, 2)
    assert usage.stderr.startswith("usage: tt spawn")
    assert ok(version).startswith("tt ")


def test_config_set_keeps_the_users_comments(tt, town_dir: Path) -> None:  # type: ignore[no-untyped-def]
    path = town_dir / "tinytown.toml"
    text = path.read_text()
    text = "# Written by hand: keep me.\n" + text.replace(
        "[runtime]\n", "[runtime]  # tuned for CI\n# graces in seconds\n"
    )
    path.write_text(text)
    assert ok(tt("config", "runtime.kill_grace", "2")) == "runtime.kill_grace = 2.0\n"
    assert ok(tt("config", "agent_clis.echo", "echo hi")) == "agent_clis.echo = echo hi\n"
    after = path.read_text()
    assert after.startswith("# Written by hand: keep me.\n")
    assert "[runtime]  # tuned for CI\n# graces in seconds\n" in after
    assert after.replace("kill_grace = 2.0", "kill_grace = 1.0").startswith(text)
