"""Auto-pipelining: concurrent callers share one connection; their commands go out in one
write and each gets its own reply; cancellation and a lost connection are handled per
caller. Deterministic: commands are held with CLIENT PAUSE, never timed."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tinytown.errors import RedisUnavailableError, ReplyLostError
from tinytown.store import connection as connection_module
from tinytown.store.client import Redis
from tinytown.store.connection import blocks


def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    writes: list[bytes] = []
    write = connection_module.Connection._write

    async def counted(self: connection_module.Connection, payload: bytes) -> None:
        writes.append(payload)
        await write(self, payload)

    monkeypatch.setattr(connection_module.Connection, "_write", counted)
    return writes


async def held(other: Redis, client_id: int, *, waiting: int = 0) -> None:
    """Until the client is held by the pause with ``waiting`` more commands behind the
    one being held (its query buffer holds them unparsed: qbuf > 0)."""
    with trio.fail_after(5):
        while True:
            info = await other.execute("CLIENT", "LIST", "ID", client_id)
            fields = dict(p.split("=", 1) for p in info.split() if "=" in p)
            if "b" in fields.get("flags", "") and (not waiting or int(fields["qbuf"]) > 0):
                return
            await trio.sleep(0.005)


async def test_concurrent_commands_go_out_in_one_write_and_get_their_own_replies(
    redis: Redis, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await redis.execute("PING")  # the shared connection exists
    writes = count_writes(monkeypatch)
    results: dict[int, Any] = {}

    async def one(i: int) -> None:
        results[i] = await redis.pipeline([["SET", f"{key}:{i}", i], ["GET", f"{key}:{i}"]])

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
    assert results == {i: ["OK", str(i)] for i in range(20)}
    # The first goes at once; the second, finding a reply awaited, yields once and the
    # other 18 join its write.
    assert len(writes) == 2
    assert redis._idle == []  # no extra connections were opened
    await redis.execute("DEL", *[f"{key}:{i}" for i in range(20)])


async def test_a_caller_cancelled_after_its_write_leaves_the_connection_in_step(
    redis: Redis, other: Redis, key: str
) -> None:
    conn_id = await redis.execute("CLIENT", "ID")
    await other.execute("CLIENT", "PAUSE", 20_000, "WRITE")
    try:
        async with trio.open_nursery() as nursery:
            cancel = trio.CancelScope()

            async def cancelled_incr() -> None:
                with cancel:
                    await redis.execute("INCR", key)

            nursery.start_soon(cancelled_incr)
            await held(other, conn_id)
            cancel.cancel()  # its INCR was written: it runs, its reply is dropped
            got: list[Any] = []

            async def get() -> None:
                got.append(await redis.execute("GET", key))

            nursery.start_soon(get)
            await held(other, conn_id, waiting=1)
            await other.execute("CLIENT", "UNPAUSE")
    finally:
        await other.execute("CLIENT", "UNPAUSE")
    assert got == ["1"]  # the GET's own reply, not the INCR's (1 as an integer)
    assert await redis.execute("CLIENT", "ID") == conn_id  # the same connection, in step
    assert await redis.execute("INCR", key) == 2
    await redis.execute("DEL", key)


async def test_a_caller_cancelled_before_writing_sends_nothing(redis: Redis, key: str) -> None:
    await redis.execute("PING")
    with trio.CancelScope() as scope:
        scope.cancel()
        await redis.execute("INCR", key)
    assert scope.cancelled_caught
    assert await redis.execute("GET", key) is None


async def test_a_lost_connection_fails_every_caller_waiting_on_it(
    redis: Redis, other: Redis, key: str
) -> None:
    conn_id = await redis.execute("CLIENT", "ID")
    outcomes: list[BaseException] = []

    async def incr(k: str) -> None:
        try:
            await redis.execute("INCR", k)
        except RedisUnavailableError as exc:
            outcomes.append(exc)

    await other.execute("CLIENT", "PAUSE", 20_000, "WRITE")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(incr, key + ":a")
            nursery.start_soon(incr, key + ":b")
            await held(other, conn_id, waiting=1)
            assert await other.execute("CLIENT", "KILL", "ID", conn_id) == 1
    finally:
        await other.execute("CLIENT", "UNPAUSE")
    # Both were written: each may or may not have run, and each caller is told so.
    assert len(outcomes) == 2 and all(isinstance(e, ReplyLostError) for e in outcomes)
    assert await redis.execute("INCR", key + ":a") == 1  # killed while held: never ran
    assert await redis.execute("CLIENT", "ID") != conn_id  # a fresh shared connection
    await redis.execute("DEL", key + ":a")


async def test_blocking_commands_never_hold_up_the_shared_connection(
    redis: Redis, other: Redis, key: str
) -> None:
    got: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def pop() -> None:
            got.append(await redis.execute("BLPOP", key, 10))

        nursery.start_soon(pop)
        with trio.fail_after(5):
            while "cmd=blpop" not in await other.execute("CLIENT", "LIST", "TYPE", "normal"):
                await trio.sleep(0.005)
            assert await redis.execute("PING") == "PONG"  # not behind the BLPOP
        await redis.execute("RPUSH", key, "v")
    assert got == [[key, "v"]]
    assert len(redis._idle) == 1  # the BLPOP's own connection, pooled again


def test_which_commands_block() -> None:
    assert blocks([["BLPOP", "k", 0]]) and blocks([["GET", "k"], [b"brpop", "k", 1]])
    assert blocks([["XREAD", "BLOCK", 0, "STREAMS", "s", "$"]])
    assert not blocks([["XREAD", "COUNT", 5, "STREAMS", "s", "0"]])
    assert not blocks([["EVALSHA", "abc", 0], ["LPUSH", "k", "BLOCK"]])


def _write_fails_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next write breaks after its bytes may have partly gone out (what a dropped
    connection does mid-`send_all`); later writes work."""
    write = connection_module.Connection._write
    failed: list[bool] = []

    async def once(self: connection_module.Connection, payload: bytes) -> None:
        if not failed:
            failed.append(True)
            self.broken = True
            raise RedisUnavailableError("Lost the connection to Redis: broken pipe.")
        await write(self, payload)

    monkeypatch.setattr(connection_module.Connection, "_write", once)


async def test_a_lone_callers_pipeline_broken_mid_write_may_have_run(
    redis: Redis, other: Redis, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several commands of ONE caller: the first ones may have arrived and run, so the
    failure is a lost reply (never retried blindly), as for any multi-command write."""
    _write_fails_once(monkeypatch)
    with pytest.raises(ReplyLostError):
        await redis.pipeline([["INCR", key], ["INCR", key]])


async def test_a_lone_command_broken_mid_write_cannot_have_run(
    redis: Redis, other: Redis, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One command not written whole cannot have run: "not sent" (the runtime's client
    then tries it again on a fresh connection; this one-shot client says so at once)."""
    _write_fails_once(monkeypatch)
    with pytest.raises(RedisUnavailableError) as caught:
        await redis.execute("INCR", key)
    assert not isinstance(caught.value, ReplyLostError)
    assert await other.execute("GET", key) is None
