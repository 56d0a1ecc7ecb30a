"""Least privilege: agents never get the admin password. Against a real redis-server
started here with ``requirepass`` on a Unix socket (the bundled binary)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tinytown import TaskState
from tinytown.errors import RedisUnavailableError
from tinytown.services.access import has_password, with_credentials
from tinytown.services.config import TownConfig
from tinytown.services.town import Town
from tinytown.store.client import Redis, ResponseError
from tinytown.store.server import connect_unix, find_server_binary, wait_gone

ADMIN = "adm1n-s3cret"


@pytest.fixture(scope="module")
def secured() -> Iterator[Path]:
    """A redis-server requiring ADMIN, on a Unix socket in a short temp dir."""
    where = Path(tempfile.mkdtemp(prefix="tt-acl-", dir="/tmp"))
    sock = where / "redis.sock"
    args = ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
    args += ["--requirepass", ADMIN, "--save", "", "--dir", str(where)]
    proc = subprocess.Popen(
        [find_server_binary(), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # start-up only: wait for the socket to answer
            try:
                with connect_unix(sock, timeout=1) as probe:
                    probe.sendall(b"*1\r\n$4\r\nPING\r\n")
                    if probe.recv(64):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        shutil.rmtree(where, ignore_errors=True)


def url(sock: Path, user: str = "", password: str = ADMIN) -> str:
    return f"unix://{user}:{password}@{sock}"


@pytest.fixture
async def town(secured: Path, town_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Town:
    monkeypatch.setenv("REDIS_URL", url(secured))
    town = await Town.connect(town_dir)
    yield town  # type: ignore[misc]
    await town.aclose()


def test_url_credentials_are_replaced_or_removed() -> None:
    assert with_credentials("redis://u:p@h:1/2?password=x&db=2", None, None) == "redis://h:1/2?db=2"
    assert with_credentials("unix://:p@/tmp/s", "a", "b/c") == "unix://a:b%2Fc@/tmp/s"
    assert has_password("redis://h/0?password=x") and not has_password("unix:///tmp/s")


async def test_agents_get_a_user_limited_to_their_town(town: Town) -> None:
    before = town.env_for_agents()
    assert ADMIN not in "".join(before.values())  # safe even before prepare()
    assert await town.access.prepare() is None
    env = town.env_for_agents()
    assert ADMIN not in "".join(env.values()) and town.access.restricted
    agent = Redis(env["REDIS_URL"])
    try:
        mine = f"tt:{town.name}:probe"
        await agent.execute("SET", mine, "1")
        assert await agent.execute("GET", mine) == "1"
        await agent.execute("PUBLISH", town.keys.wake, "x")
        for command in (
            ["GET", "tt:another-town:task:1"],
            ["SET", "unrelated", "1"],
            ["PUBLISH", "tt:another-town:wake", "x"],
            ["KEYS", "*"],
            ["SCAN", "0"],
            ["CONFIG", "GET", "dir"],
            ["ACL", "LIST"],
            ["FLUSHALL"],
            ["SHUTDOWN"],
        ):
            with pytest.raises(ResponseError, match="NOPERM"):
                await agent.execute(*command)
    finally:
        await agent.aclose()


async def test_an_agent_url_works_for_the_town_and_rotates(
    town: Town, town_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await town.access.prepare()
    first = town.env_for_agents()["REDIS_URL"]
    monkeypatch.setenv("REDIS_URL", first)  # what an agent's `tt` sees
    as_agent = await Town.connect(town_dir)
    try:
        await town.agents.spawn("w")
        task = await as_agent.tasks.assign("w", "print hi")  # atomic scripts pass the ACL
        await as_agent.tasks.complete(task.id, "ok")
        assert (await town.tasks.get(task.id)).state is TaskState.COMPLETED
    finally:
        await as_agent.aclose()
    await town.access.prepare()  # the next runtime: a new password, the old one is dead
    old = Redis(first)
    try:
        with pytest.raises(RedisUnavailableError, match="refused the login"):
            await old.execute("PING")
    finally:
        await old.aclose()


async def test_without_acl_rights_agents_get_no_password(
    secured: Path, town_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = Redis(url(secured))
    user, password = f"limited-{uuid.uuid4().hex[:6]}", "l1m1ted-pw"
    await admin.execute(
        "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-@admin"
    )
    monkeypatch.setenv("REDIS_URL", url(secured, user, password))
    town = await Town.connect(town_dir)
    try:
        warning = await town.access.prepare()
        assert warning is not None and "agents get no Redis password" in warning
        env = town.env_for_agents()
        assert password not in "".join(env.values()) and not has_password(env["REDIS_URL"])
        assert not town.access.restricted
    finally:
        await town.aclose()
        await admin.execute("ACL", "DELUSER", user)
        await admin.aclose()


def test_tt_run_gives_agents_the_restricted_user(
    secured: Path, town_dir: Path, tt_env: dict[str, str]
) -> None:
    """Through `tt`: an agent's CLI sees a REDIS_URL without the admin password, and its
    own `tt` calls (send, complete) work with it."""
    env = {**tt_env, "REDIS_URL": url(secured)}
    config = TownConfig.load(town_dir)

    def tt(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tinytown", *args],
            cwd=town_dir, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert tt("spawn", "w").returncode == 0
    assigned = tt("assign", "w", "env REDIS_URL; send supervisor hello; complete ok")
    assert assigned.returncode == 0, assigned.stderr
    started = tt("run", "--detach")
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout.split("(pid ")[1].split(")")[0])
    try:
        waited = tt("wait", "w", "--idle", "--timeout", "30")
        assert waited.returncode == 0, waited.stderr
        tasks = json.loads(tt("tasks", "--json").stdout)
        assert [t["state"] for t in tasks] == ["completed"], tasks
        log = (town_dir / ".tt" / "logs" / "w.log").read_text()
        seen = [line for line in log.splitlines() if line.startswith("REDIS_URL=")]
        assert seen and ADMIN not in log and f"tt-{config.name}-agent" in seen[0]
    finally:
        os.kill(pid, signal.SIGTERM)
        assert wait_gone(pid, 30)  # the runtime (and its agents) are gone
