"""The trio-native Redis client, against a real redis-server (SPEC §4)."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tinytown.errors import RedisUnavailableError, ReplyLostError
from tinytown.store import client as client_module
from tinytown.store.client import Address, Connection, Redis, ResponseError, Script
from tinytown.store.server import EmbeddedServer

NOWHERE = "unix:///nonexistent-tinytown-test.sock"


async def client_exists(redis: Redis, client_id: int) -> bool:
    return bool(await redis.execute("CLIENT", "LIST", "ID", client_id))


async def wait_client_gone(redis: Redis, client_id: int) -> None:
    with trio.fail_after(3):
        while await client_exists(redis, client_id):
            await trio.sleep(0.01)


# -- commands, pipelines, scripts ----------------------------------------------------------


async def test_execute_decodes_replies(redis: Redis, key: str) -> None:
    assert await redis.execute("PING") == "PONG"
    assert await redis.execute("SET", key, "héllo ✓") == "OK"
    value = await redis.execute("GET", key)
    assert isinstance(value, str)
    assert value == "héllo ✓"
    assert await redis.execute("GET", key + ":absent") is None
    assert await redis.execute("DEL", key) == 1
    assert await redis.execute("RPUSH", key, "a", b"b", 3, 1.5) == 4
    assert await redis.execute("LRANGE", key, 0, -1) == ["a", "b", "3", "1.5"]
    assert await redis.execute("INCRBY", key + ":n", 5) == 5
    await redis.execute("DEL", key, key + ":n")


async def test_pipeline_returns_every_reply_in_order(redis: Redis, key: str) -> None:
    replies = await redis.pipeline(
        [["SET", key, "1"], ["INCR", key], ["GET", key], ["EXISTS", key], ["DEL", key]]
    )
    assert replies == ["OK", 2, "2", 1, 1]
    assert await redis.pipeline([]) == []


async def test_response_error_and_connection_stays_usable(redis: Redis, key: str) -> None:
    conn_id = await redis.execute("CLIENT", "ID")
    with pytest.raises(ResponseError, match=r"(?i)unknown command"):
        await redis.execute("NOSUCHCOMMAND", "x")
    assert await redis.execute("PING") == "PONG"
    # The same connection went back to the pool: an error reply does not break it.
    assert await redis.execute("CLIENT", "ID") == conn_id
    await redis.execute("SET", key, "str")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await redis.execute("LPUSH", key, "x")
    assert await redis.execute("GET", key) == "str"
    assert await redis.execute("CLIENT", "ID") == conn_id
    await redis.execute("DEL", key)


async def test_pipeline_error_raises_but_the_rest_ran(redis: Redis, key: str) -> None:
    conn_id = await redis.execute("CLIENT", "ID")
    with pytest.raises(ResponseError):
        await redis.pipeline([["SET", key, "a"], ["BOGUS"], ["APPEND", key, "b"]])
    # Every reply of the pipeline was read: the next reply belongs to the next command.
    assert await redis.execute("GET", key) == "ab"
    assert await redis.execute("CLIENT", "ID") == conn_id
    await redis.execute("DEL", key)


async def test_run_script(redis: Redis, key: str) -> None:
    script = Script("redis.call('SET', KEYS[1], ARGV[1]); return {ARGV[1], 42}")
    assert await redis.run_script(script, [key], ["v1"]) == ["v1", 42]
    assert await redis.execute("GET", key) == "v1"
    await redis.execute("DEL", key)


async def test_run_script_after_script_flush(redis: Redis, key: str) -> None:
    source = f"return redis.call('INCR', KEYS[1]) -- {uuid.uuid4().hex}"
    script = Script(source)
    await redis.execute("SCRIPT", "FLUSH")
    assert await redis.execute("SCRIPT", "EXISTS", script.sha) == [0]
    assert await redis.run_script(script, [key], []) == 1  # NOSCRIPT -> EVAL
    assert await redis.execute("SCRIPT", "EXISTS", script.sha) == [1]
    await redis.execute("SCRIPT", "FLUSH")
    assert await redis.run_script(script, [key], []) == 2
    assert await redis.run_script(script, [key], []) == 3  # cached again: EVALSHA
    await redis.execute("DEL", key)


def test_script_sha_is_sha1_of_source() -> None:
    source = "return 1"
    assert Script(source).sha == hashlib.sha1(source.encode()).hexdigest()


async def test_run_script_error_is_not_swallowed(redis: Redis, key: str) -> None:
    await redis.execute("SET", key, "x")
    script = Script("return redis.call('LPUSH', KEYS[1], 'y')")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await redis.run_script(script, [key], [])
    assert await redis.execute("GET", key) == "x"
    await redis.execute("DEL", key)


async def test_large_values_round_trip(redis: Redis, key: str) -> None:
    chunk = "0123456789abcdef✓é"
    big = (chunk * (1024 * 1024 // len(chunk) + 1))[: 1024 * 1024]
    assert len(big) == 1024 * 1024
    await redis.execute("SET", key, big)
    assert await redis.execute("GET", key) == big
    assert await redis.execute("STRLEN", key) == len(big.encode())
    # Several large replies in one pipeline.
    replies = await redis.pipeline([["GET", key], ["PING"], ["GET", key]])
    assert replies == [big, "PONG", big]
    await redis.execute("DEL", key)


async def test_concurrent_commands_use_separate_connections(redis: Redis, key: str) -> None:
    results: dict[int, str] = {}

    async def one(i: int) -> None:
        await redis.execute("SET", f"{key}:{i}", f"value-{i}")
        results[i] = await redis.execute("GET", f"{key}:{i}")

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
    assert results == {i: f"value-{i}" for i in range(20)}
    await redis.execute("DEL", *[f"{key}:{i}" for i in range(20)])


async def exclusive_id(redis: Redis, key: str) -> int:
    """The id of the pooled connection a blocking command gets next (blocking commands
    never share the auto-pipelined connection): found with a blocking no-op."""
    client_id, _ = await redis.pipeline([["CLIENT", "ID"], ["BLPOP", f"{key}:none", "0.001"]])
    assert len(redis._idle) == 1
    return int(client_id)


# -- cancellation --------------------------------------------------------------------------


async def test_cancelled_blpop_leaves_no_stale_reply(redis: Redis, other: Redis, key: str) -> None:
    other_key = key + ":other"
    await redis.execute("SET", other_key, "its own value")
    blpop_conn = await exclusive_id(redis, key)  # the one pooled connection

    with trio.move_on_after(0.2) as scope:
        await redis.execute("BLPOP", key, 30)
    assert scope.cancelled_caught

    # The connection that ran BLPOP was closed, not pooled: the server drops it.
    assert not any(conn.broken for conn in redis._idle)
    assert redis._idle == []
    await wait_client_gone(other, blpop_conn)

    # A value pushed now is not consumed by the abandoned BLPOP...
    assert await redis.execute("RPUSH", key, "pushed") == 1
    # ...and the next reply read on this client is the reply to the next command.
    assert await redis.execute("GET", other_key) == "its own value"
    assert await redis.execute("LPOP", key) == "pushed"
    assert await redis.execute("CLIENT", "ID") != blpop_conn
    await redis.execute("DEL", key, other_key)


async def test_cancelled_pipeline_leaves_no_stale_reply(
    redis: Redis, other: Redis, key: str
) -> None:
    other_key = key + ":other"
    await redis.execute("SET", other_key, "its own value")
    conn_id = await exclusive_id(redis, key)

    with trio.move_on_after(0.2) as scope:
        await redis.pipeline([["SET", key + ":before", "1"], ["BLPOP", key, 30], ["PING"]])
    assert scope.cancelled_caught
    assert redis._idle == []
    await wait_client_gone(other, conn_id)

    await redis.execute("RPUSH", key, "pushed")
    assert await redis.execute("GET", other_key) == "its own value"
    assert await redis.pipeline([["LPOP", key], ["GET", key + ":before"]]) == ["pushed", "1"]
    await redis.execute("DEL", key, other_key, key + ":before")


async def test_dedicated_connection_blocks_and_is_closed(
    redis: Redis, other: Redis, key: str
) -> None:
    async with redis.dedicated() as conn:
        conn_id = await conn.execute("CLIENT", "ID")
        async with trio.open_nursery() as nursery:
            got: list[object] = []

            async def wait() -> None:
                got.append(await conn.execute("BLPOP", key, 5))

            nursery.start_soon(wait)
            await trio.sleep(0.05)
            await other.execute("RPUSH", key, "hello")
        assert got == [[key, "hello"]]
    assert conn.broken
    await wait_client_gone(other, conn_id)
    assert redis._idle == []  # a dedicated connection never joins the pool


async def test_cancelled_connection_is_marked_broken(redis: Redis, key: str) -> None:
    async with redis.dedicated() as conn:
        with trio.move_on_after(0.1):
            await conn.execute("BLPOP", key, 30)
        assert conn.broken
        with pytest.raises(RedisUnavailableError, match="broken"):
            await conn.execute("PING")


async def test_connection_open_directly(redis_server: EmbeddedServer) -> None:
    conn = await Connection.open(Address.from_url(redis_server.url))
    try:
        assert await conn.execute("PING") == "PONG"
        echo, error = await conn.pipeline([["ECHO", "a"], ["NOPE"]])
        assert echo == "a"
        assert isinstance(error, ResponseError)  # errors come back as values
        assert not conn.broken
        assert await conn.execute("ECHO", "b") == "b"
    finally:
        await conn.aclose()
    assert conn.broken


# -- addresses -----------------------------------------------------------------------------


def test_address_unix() -> None:
    address = Address.from_url("unix:///tmp/tt/redis.sock")
    assert address.path == "/tmp/tt/redis.sock"
    assert address.tls is False
    assert address.password is None
    assert address.describe() == "unix:///tmp/tt/redis.sock"


def test_address_unix_with_password_and_db() -> None:
    address = Address.from_url("unix://:s3cret@/tmp/tt/redis.sock?db=3")
    assert address.path == "/tmp/tt/redis.sock"
    assert address.password == "s3cret"
    assert address.db == 3
    assert "s3cret" not in address.describe()


def test_address_redis_with_credentials() -> None:
    address = Address.from_url("redis://u:p@h:1/2")
    assert address.path is None
    assert (address.host, address.port, address.db) == ("h", 1, 2)
    assert (address.username, address.password) == ("u", "p")
    assert address.tls is False
    described = address.describe()
    assert described == "redis://h:1/2"
    assert "p@" not in described and ":p" not in described and "u:" not in described


def test_address_defaults() -> None:
    address = Address.from_url("redis://example.org")
    assert (address.host, address.port, address.db, address.tls) == ("example.org", 6379, 0, False)


def test_address_rediss_is_tls() -> None:
    address = Address.from_url("rediss://:topsecret@cache.example.com:6380/0")
    assert address.tls is True
    assert address.host == "cache.example.com"
    assert address.port == 6380
    assert address.password == "topsecret"
    assert address.describe().startswith("rediss://")
    assert "topsecret" not in address.describe()


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:hunter2@host:6379/0",
        "rediss://user:hunter2@host:6379/1",
        "redis://:hunter2@host",
        "unix://user:hunter2@/run/redis.sock",
    ],
)
def test_describe_never_shows_the_password(url: str) -> None:
    address = Address.from_url(url)
    assert address.password == "hunter2"
    assert "hunter2" not in address.describe()


def test_invalid_url() -> None:
    with pytest.raises(RedisUnavailableError, match="Invalid Redis URL"):
        Address.from_url("http://example.org")


# -- unreachable servers -------------------------------------------------------------------


async def test_unreachable_raises_quickly_without_reconnect() -> None:
    client = Redis(NOWHERE, reconnect=False)
    start = time.monotonic()
    with pytest.raises(RedisUnavailableError) as info:
        await client.execute("PING")
    assert time.monotonic() - start < 1.0
    assert "nonexistent-tinytown-test.sock" in str(info.value)
    with pytest.raises(RedisUnavailableError):
        await client.pipeline([["PING"]])
    await client.aclose()


async def test_wrong_password_is_refused(redis_server: EmbeddedServer) -> None:
    path = redis_server.url.removeprefix("unix://")
    client = Redis(f"unix://:wrong-password@{path}")
    with pytest.raises(RedisUnavailableError, match="refused the login") as info:
        await client.execute("PING")
    assert "wrong-password" not in str(info.value)
    await client.aclose()


async def test_reconnect_waits_and_is_cancellable(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = 0
    real_open = Connection.open

    async def counting_open(address: Address) -> Connection:
        nonlocal attempts
        attempts += 1
        return await real_open(address)

    monkeypatch.setattr(client_module.Connection, "open", counting_open)
    client = Redis(NOWHERE, reconnect=True)
    start = trio.current_time()
    with trio.move_on_after(60) as scope:
        await client.execute("PING")
        pytest.fail("a command reached a server that does not exist")
    assert scope.cancelled_caught
    assert trio.current_time() - start >= 60
    # It kept trying, with backoff capped at a couple of seconds: neither busy nor idle.
    assert 10 < attempts < 200
    await client.aclose()


async def test_reconnect_succeeds_when_the_server_appears(
    redis_server: EmbeddedServer, tmp_path: Path
) -> None:
    link = tmp_path / "late.sock"
    client = Redis(f"unix://{link}", reconnect=True)

    async def appear() -> None:
        await trio.sleep(0.3)
        os.symlink(redis_server.url.removeprefix("unix://"), link)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(appear)
            assert await client.execute("PING") == "PONG"
    await client.aclose()


# -- lost replies: only idempotent commands are retried ------------------------------------
#
# A command is held by the server with CLIENT PAUSE (issued from another connection), its
# connection is killed with CLIENT KILL while it waits, then the pause is lifted: the
# reply is deterministically lost, no timing luck involved.


async def wait_held(other: Redis, client_id: int, command: str) -> None:
    """Until the client is blocked in ``command`` (paused or blocking)."""
    with trio.fail_after(5):
        while True:
            info = await other.execute("CLIENT", "LIST", "ID", client_id)
            fields = dict(p.split("=", 1) for p in info.split() if "=" in p)
            if "b" in fields.get("flags", "") and fields.get("cmd") == command:
                return
            await trio.sleep(0.005)


async def lose_reply(
    other: Redis,
    client_id: int,
    command: str,
    call: Any,
    *,
    pause: str | None,
    after_kill: Any = None,
) -> list[object]:
    """Run ``call`` on the client ``client_id`` while it is held, kill its connection and
    return what the call returned or raised (the pause is lifted after the kill, then
    ``after_kill`` runs)."""
    outcome: list[object] = []

    async def run() -> None:
        try:
            outcome.append(await call())
        except Exception as exc:  # the outcome is what we test
            outcome.append(exc)

    if pause:
        await other.execute("CLIENT", "PAUSE", 20_000, pause)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                await wait_held(other, client_id, command)
                assert await other.execute("CLIENT", "KILL", "ID", client_id) == 1
                if pause:
                    await other.execute("CLIENT", "UNPAUSE")
                    pause = None
                if after_kill is not None:
                    await after_kill()
    finally:
        if pause:
            await other.execute("CLIENT", "UNPAUSE")
    return outcome


@pytest.fixture
async def runtime_client(redis_server: EmbeddedServer) -> AsyncIterator[Redis]:
    client = Redis(redis_server.url, reconnect=True)
    try:
        yield client
    finally:
        await client.aclose()


async def test_lost_reply_of_a_write_is_not_retried(
    runtime_client: Redis, other: Redis, key: str
) -> None:
    conn_id = await runtime_client.execute("CLIENT", "ID")
    outcome = await lose_reply(
        other, conn_id, "incr", lambda: runtime_client.execute("INCR", key), pause="WRITE"
    )
    # Old behaviour: the INCR ran again on a new connection once the pause was lifted.
    assert len(outcome) == 1 and isinstance(outcome[0], ReplyLostError), outcome
    assert isinstance(outcome[0], RedisUnavailableError)
    assert "may or may not have run" in str(outcome[0])
    assert await other.execute("GET", key) is None  # killed while held: it never ran
    # The client goes on with a fresh connection.
    assert await runtime_client.execute("INCR", key) == 1
    await other.execute("DEL", key)


async def test_lost_reply_after_the_write_ran_is_not_retried(
    runtime_client: Redis, other: Redis, key: str
) -> None:
    """The INCR ran, the reply of the pipeline was lost: running it again would count twice."""
    conn_id = await exclusive_id(runtime_client, key)

    async def release() -> None:
        # Would let a retried pipeline finish (and be counted twice); stays unread here.
        await wait_client_gone(other, conn_id)
        await other.execute("RPUSH", key + ":wait", "x")

    outcome = await lose_reply(
        other,
        conn_id,
        "blpop",
        lambda: runtime_client.pipeline([["INCR", key], ["BLPOP", key + ":wait", 0]]),
        pause=None,
        after_kill=release,
    )
    assert len(outcome) == 1 and isinstance(outcome[0], ReplyLostError), outcome
    assert await other.execute("GET", key) == "1"
    assert await other.execute("LLEN", key + ":wait") == 1
    await other.execute("DEL", key, key + ":wait")


async def test_lost_reply_of_a_read_is_retried(
    runtime_client: Redis, other: Redis, key: str
) -> None:
    # A read held by blocking (CLIENT PAUSE ALL would hold the killer too).
    first = await other.execute("XADD", key, "*", "n", "1")
    conn_id = await exclusive_id(runtime_client, key)
    reconnected = runtime_client.reconnected
    added: list[str] = []

    async def add() -> None:
        # Added after the kill: only a retried XREAD (from the same id) can see it.
        await wait_client_gone(other, conn_id)
        added.append(await other.execute("XADD", key, "*", "n", "2"))

    outcome = await lose_reply(
        other,
        conn_id,
        "xread",
        lambda: runtime_client.execute("XREAD", "BLOCK", 0, "STREAMS", key, first),
        pause=None,
        after_kill=add,
    )
    assert outcome == [[[key, [[added[0], ["n", "2"]]]]]]
    assert reconnected.is_set()
    assert await exclusive_id(runtime_client, key) != conn_id
    await other.execute("DEL", key)


async def test_lost_reply_of_a_read_pipeline_is_retried(
    runtime_client: Redis, other: Redis, key: str
) -> None:
    first = await other.execute("XADD", key, "*", "n", "1")
    conn_id = await exclusive_id(runtime_client, key)
    added: list[str] = []

    async def add() -> None:
        await wait_client_gone(other, conn_id)
        added.append(await other.execute("XADD", key, "*", "n", "2"))

    outcome = await lose_reply(
        other,
        conn_id,
        "xread",
        lambda: runtime_client.pipeline(
            [["XLEN", key], ["XREAD", "BLOCK", 0, "STREAMS", key, first]]
        ),
        pause=None,
        after_kill=add,
    )
    # The whole pipeline ran again, after the second entry was added.
    assert outcome == [[2, [[key, [[added[0], ["n", "2"]]]]]]]
    await other.execute("DEL", key)


async def test_lost_reply_without_reconnect_raises_even_for_reads(
    redis: Redis, other: Redis, key: str
) -> None:
    conn_id = await exclusive_id(redis, key)
    outcome = await lose_reply(
        other,
        conn_id,
        "xread",
        lambda: redis.execute("XREAD", "BLOCK", 0, "STREAMS", key, "$"),
        pause=None,
    )
    assert len(outcome) == 1 and isinstance(outcome[0], ReplyLostError), outcome


async def test_scripts_retry_only_when_declared_idempotent(
    runtime_client: Redis, other: Redis, key: str
) -> None:
    take_like = Script(
        f"return redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') -- {uuid.uuid4().hex}"
    )
    refresh = Script(
        f"redis.call('SET', KEYS[1], ARGV[1]); return ARGV[1] -- {uuid.uuid4().hex}",
        idempotent=True,
    )
    await other.execute("RPUSH", key, "m1")
    # Loaded first, so the held command is the EVALSHA itself.
    await runtime_client.execute("SCRIPT", "LOAD", take_like.source)
    await runtime_client.execute("SCRIPT", "LOAD", refresh.source)
    conn_id = await runtime_client.execute("CLIENT", "ID")
    outcome = await lose_reply(
        other,
        conn_id,
        "evalsha",
        lambda: runtime_client.run_script(take_like, [key, key + ":flight"], []),
        pause="WRITE",
    )
    assert len(outcome) == 1 and isinstance(outcome[0], ReplyLostError), outcome
    assert await other.execute("LRANGE", key, 0, -1) == ["m1"]  # never moved, not retried

    conn_id = await runtime_client.execute("CLIENT", "ID")
    outcome = await lose_reply(
        other,
        conn_id,
        "evalsha",
        lambda: runtime_client.run_script(refresh, [key + ":lease"], ["me"]),
        pause="WRITE",
    )
    assert outcome == ["me"]
    assert await other.execute("GET", key + ":lease") == "me"
    await other.execute("DEL", key, key + ":flight", key + ":lease")


async def test_explicit_idempotent_overrides_the_table(
    runtime_client: Redis, other: Redis, key: str
) -> None:
    conn_id = await runtime_client.execute("CLIENT", "ID")
    outcome = await lose_reply(
        other,
        conn_id,
        "set",
        lambda: runtime_client.execute("SET", key, "v", idempotent=True),
        pause="WRITE",
    )
    assert outcome == ["OK"]
    assert await other.execute("GET", key) == "v"
    await other.execute("DEL", key)


async def test_pooled_connection_closed_while_idle_is_replaced_for_any_command(
    redis: Redis, other: Redis, key: str
) -> None:
    """Not written yet, so even a write is safe to send on a fresh connection (one-shot
    mode too): a connection the server closed while pooled never raises ReplyLostError."""
    conn_id = await redis.execute("CLIENT", "ID")
    reconnected = redis.reconnected
    assert await other.execute("CLIENT", "KILL", "ID", conn_id) == 1
    await wait_client_gone(other, conn_id)
    assert await redis.execute("INCR", key) == 1
    assert reconnected.is_set()
    assert await other.execute("GET", key) == "1"
    await other.execute("DEL", key)


def test_idempotency_table() -> None:
    for command in (
        ["GET", "k"],
        ["mget", "a", "b"],
        ["LRANGE", "k", 0, -1],
        ["XREAD", "BLOCK", 1, "STREAMS", "s", "0-0"],
        [b"HGETALL", "h"],
        ["CLIENT", "ID"],
        ["CONFIG", "GET", "dir"],
        ["PING"],
    ):
        assert client_module.is_idempotent(command), command
    for command in (
        ["LPOP", "control"],
        ["RPUSH", "k", "v"],
        ["XADD", "s", "*", "a", "b"],
        ["EVALSHA", "sha", 0],
        ["INCR", "k"],
        ["CLIENT", "KILL", "ID", 1],
        ["SET", "k", "v"],
        ["BLPOP", "k", 0],
    ):
        assert not client_module.is_idempotent(command), command


# -- a server that refuses before running (BUSY script, LOADING after a restart) -----------

BUSY_SCRIPT = "local t = redis.call('TIME'); while true do end"


@pytest.fixture
async def busy_server(tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    """A server of its own: a busy script blocks every other client of it."""
    server = EmbeddedServer(tmp_path / ".tt")
    server.start()
    try:
        yield server
    finally:
        try:  # a script still running would keep the server from shutting down
            async with Redis(server.url).dedicated() as conn:
                await conn.execute("SCRIPT", "KILL")
        except (ResponseError, RedisUnavailableError):
            pass  # NOTBUSY: nothing to kill
        server.stop()


async def _hold_busy(url: str, started: trio.Event) -> None:
    async with Redis(url).dedicated() as conn:
        await conn.send("EVAL", BUSY_SCRIPT, 0)
        started.set()
        reply = await conn.read_reply()
        assert isinstance(reply, ResponseError) and "killed" in str(reply), reply


async def _wait_busy(url: str) -> None:
    probe = Redis(url)
    try:
        with trio.fail_after(10):
            while True:
                try:
                    await probe.execute("PING")
                except RedisUnavailableError as exc:
                    if "BUSY" in str(exc):
                        return
                    raise
                await trio.sleep(0.02)
    finally:
        await probe.aclose()


@pytest.mark.parametrize("pipelined", [False, True])
async def test_refused_before_running_is_retried_exactly_once(
    busy_server: EmbeddedServer, key: str, pipelined: bool
) -> None:
    """A BUSY (or LOADING) reply means the command did not run: a runtime client waits
    and runs it once, even a non-idempotent RPUSH; a one-shot client says Redis is not
    ready instead of showing a raw error."""
    url = busy_server.url
    admin = Redis(url)
    await admin.execute("CONFIG", "SET", "busy-reply-threshold", "50")
    runtime = Redis(url, reconnect=True)
    oneshot = Redis(url)
    try:
        async with trio.open_nursery() as nursery:
            started = trio.Event()
            nursery.start_soon(_hold_busy, url, started)
            await started.wait()
            await _wait_busy(url)
            with pytest.raises(RedisUnavailableError, match="not ready"):
                await oneshot.execute("RPUSH", key, "x")

            async def push() -> None:
                if pipelined:
                    await runtime.pipeline([["RPUSH", key, "a"], ["RPUSH", key, "b"]])
                else:
                    await runtime.execute("RPUSH", key, "a")

            nursery.start_soon(push)
            with trio.fail_after(10):  # the push met BUSY and is waiting to retry
                while not runtime._outage:
                    await trio.sleep(0.01)
            async with Redis(url).dedicated() as conn:
                await conn.execute("SCRIPT", "KILL")
        expected = ["a", "b"] if pipelined else ["a"]
        assert await admin.execute("LRANGE", key, 0, -1) == expected
    finally:
        for client in (admin, runtime, oneshot):
            await client.aclose()
