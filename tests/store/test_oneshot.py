"""One-shot commands without an event loop: the blocking connection (store/blocking.py),
the loop-less driver (store/oneshot.py), and `tt send` / `tt status` / `tt task complete`
never importing trio. Against the real redis-server."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tinytown.errors import RedisUnavailableError, ReplyLostError
from tinytown.store import blocking, oneshot
from tinytown.store.blocking import BlockingConnection
from tinytown.store.client import Redis, in_trio
from tinytown.store.connection import Connection
from tinytown.store.server import EmbeddedServer


def key() -> str:
    return f"test:oneshot:{uuid.uuid4().hex}"


def test_outside_trio_the_pool_uses_blocking_connections(redis_server: EmbeddedServer) -> None:
    redis = Redis(redis_server.url)
    k = key()

    async def work() -> list[object]:
        await redis.execute("RPUSH", k, "a", "b")
        return [await redis.execute("LRANGE", k, 0, -1), await redis.pipeline([["LLEN", k]])]

    assert not in_trio()
    assert oneshot.run(work) == [["a", "b"], [2]]
    assert [type(c) for c in redis._idle] == [BlockingConnection]
    oneshot.run(redis.execute, "DEL", k)


def test_inside_trio_a_blocking_connection_is_never_reused(
    redis_server: EmbeddedServer,
) -> None:
    redis = Redis(redis_server.url)
    assert oneshot.run(redis.execute, "PING") == "PONG"
    blocking_conn = redis._idle[0]

    async def in_trio_run() -> tuple[bool, str]:
        return in_trio(), await redis.execute("PING")

    assert trio.run(in_trio_run) == (True, "PONG")
    assert blocking_conn.broken  # closed, not handed to trio
    assert redis._idle == [] and isinstance(redis._shared, Connection)  # shared under trio
    trio.run(redis.aclose)


def test_a_coroutine_that_needs_trio_before_writing_runs_again_under_trio(
    redis_server: EmbeddedServer,
) -> None:
    redis = Redis(redis_server.url)
    runs: list[bool] = []

    async def reads_then_sleeps() -> str:
        runs.append(in_trio())
        value = await redis.execute("PING")  # a read: nothing changed yet
        await trio.sleep(0)  # needs the event loop
        return str(value)

    assert oneshot.run(reads_then_sleeps) == "PONG"
    assert runs == [False, True]  # tried without a loop, then again under trio


def test_a_coroutine_that_needs_trio_after_writing_is_not_run_twice(
    redis_server: EmbeddedServer,
) -> None:
    redis = Redis(redis_server.url)
    k = key()

    async def writes_then_sleeps() -> None:
        await redis.execute("INCR", k)
        await trio.sleep(0)

    with pytest.raises(oneshot.NeedsEventLoop):
        oneshot.run(writes_then_sleeps)
    assert oneshot.run(redis.execute, "GET", k) == "1"  # the write happened once
    oneshot.run(redis.execute, "DEL", k)


def test_other_runtime_errors_are_not_taken_for_needing_trio() -> None:
    async def broken() -> None:
        raise RuntimeError("something else")

    with pytest.raises(RuntimeError, match="something else"):
        oneshot.run(broken)


def test_run_sync_calls_directly_outside_trio_and_in_a_thread_inside() -> None:
    main = threading.get_ident()
    assert oneshot.run(oneshot.run_sync, threading.get_ident) == main
    assert trio.run(oneshot.run_sync, threading.get_ident) != main


def test_blocking_connect_failure_is_unavailable() -> None:
    redis = Redis("unix:///nonexistent-tinytown-oneshot.sock")
    with pytest.raises(RedisUnavailableError, match="Cannot reach Redis"):
        oneshot.run(redis.execute, "PING")


@pytest.fixture
def mute_server(tmp_path: Path) -> Iterator[str]:
    """A Unix socket that reads one command and closes without answering (a lost reply)."""
    path = str(tmp_path / "mute.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        listener.close()
        thread.join(5)


def test_a_lost_reply_after_a_write_is_reply_lost_and_counted(mute_server: str) -> None:
    redis = Redis(mute_server)
    before = blocking.writes
    with pytest.raises(ReplyLostError):
        oneshot.run(redis.execute, "INCR", "x")  # not idempotent: never retried
    assert blocking.writes == before + 1


def test_one_shot_commands_never_import_trio(
    tt_env: dict[str, str], town_dir: Path, tt: object
) -> None:
    """`tt send`, `tt status`, `tt task complete` and the readers agents use in their rounds
    run loop-less in a fresh process: trio is never loaded (a module-level
    `from trio import ...` on their path would break it)."""
    run = tt  # the fixture's runner, for setting the town up

    def ok(*args: str) -> str:
        done = run(*args)  # type: ignore[operator]
        assert done.returncode == 0, done.stderr
        return str(done.stdout)

    ok("spawn", "w1")
    task_id = json.loads(ok("assign", "w1", "a task", "--json"))["id"]
    probe = (
        "import sys\n"
        "from tinytown.entry import main\n"
        "code = main(sys.argv[1:])\n"
        "print('TRIO LOADED' if 'trio._core._run' in sys.modules else 'NO TRIO')\n"
        "raise SystemExit(code)\n"
    )
    for args in (
        ["send", "w1", "hello"],
        ["status"],
        ["tasks"],
        ["task", "current", "w1"],
        ["inbox", "w1"],
        ["list"],
        ["task", "complete", task_id],
    ):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            cwd=town_dir,
            env=tt_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == "NO TRIO", (args, done.stdout)
    assert "completed" in ok("task", "show", task_id)
