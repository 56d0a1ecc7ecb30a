"""The event stream: reads, and a follower that rides out dropped connections and a
Redis restart without repeating or skipping an event (issue 9, point 1)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from tinytown.errors import RedisUnavailableError
from tinytown.store.client import Redis
from tinytown.store.events import Event
from tinytown.store.keys import Keys
from tinytown.store.records import Store
from tinytown.store.server import EmbeddedServer


@pytest.fixture
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A server of this test's own: it is killed, restarted and has its clients dropped."""
    server = EmbeddedServer(tmp_path_factory.mktemp("events") / ".tt")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def store(private_server: EmbeddedServer) -> AsyncIterator[Store]:
    redis = Redis(private_server.url, reconnect=True)
    try:
        yield Store(redis, Keys(f"t-{uuid.uuid4().hex[:12]}"))
    finally:
        await redis.aclose()


@pytest.fixture
async def admin(private_server: EmbeddedServer) -> AsyncIterator[Redis]:
    redis = Redis(private_server.url, reconnect=True)
    try:
        yield redis
    finally:
        await redis.aclose()


async def add(admin: Redis, store: Store, n: int) -> str:
    return await admin.execute("XADD", store.keys.events, "*", "kind", "test", "n", str(n))


async def follower_id(admin: Redis) -> int:
    """The id of the connection blocked in XREAD (the follower's), once there is one."""
    with trio.fail_after(10):
        while True:
            for line in (await admin.execute("CLIENT", "LIST", "TYPE", "normal")).splitlines():
                fields = dict(p.split("=", 1) for p in line.split() if "=" in p)
                if fields.get("cmd") == "xread" and "b" in fields.get("flags", ""):
                    return int(fields["id"])
            await trio.sleep(0.005)


class Follower:
    """Runs ``store.events.follow`` in the background, collecting what it yields."""

    def __init__(self, store: Store, **kwargs: object) -> None:
        self.store = store
        self.kwargs = kwargs
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self._changed = trio.Event()

    async def run(self) -> None:
        try:
            async for event in self.store.events.follow(**self.kwargs):  # type: ignore[arg-type]
                self.events.append(event)
                self._changed.set()
        except RedisUnavailableError as exc:
            self.error = exc
            self._changed.set()

    async def until(self, count: int) -> list[str]:
        with trio.fail_after(20):
            while len(self.events) < count and self.error is None:
                self._changed = trio.Event()
                await self._changed.wait()
        return [e.fields["n"] for e in self.events]


async def test_follow_resumes_after_the_connection_is_killed(store: Store, admin: Redis) -> None:
    await add(admin, store, 0)  # older than the follow: not yielded
    follower = Follower(store)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower.run)
        conn_id = await follower_id(admin)
        await add(admin, store, 1)
        assert await follower.until(1) == ["1"]
        conn_id = await follower_id(admin)
        # Added and killed in one step: the blocked XREAD never gets event 2 on its old
        # connection, so only a follower resuming from the last id seen yields it.
        await admin.pipeline(
            [
                ["MULTI"],
                ["XADD", store.keys.events, "*", "kind", "test", "n", "2"],
                ["CLIENT", "KILL", "ID", conn_id],
                ["EXEC"],
            ]
        )
        assert await follower.until(2) == ["1", "2"]
        assert await follower_id(admin) != conn_id  # on a new connection
        await add(admin, store, 3)
        # Killing every client (the fault of issue 9) is ridden out too.
        await admin.execute("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await add(admin, store, 4)
        assert await follower.until(4) == ["1", "2", "3", "4"]
        nursery.cancel_scope.cancel()
    assert follower.error is None


async def test_follow_survives_a_redis_restart(
    store: Store, admin: Redis, private_server: EmbeddedServer
) -> None:
    follower = Follower(store)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower.run)
        await follower_id(admin)
        await add(admin, store, 1)
        assert await follower.until(1) == ["1"]
        await trio.to_thread.run_sync(private_server.stop)
        await trio.to_thread.run_sync(private_server.start)
        await add(admin, store, 2)
        await add(admin, store, 3)
        assert await follower.until(3) == ["1", "2", "3"]  # nothing repeated or skipped
        nursery.cancel_scope.cancel()
    assert follower.error is None


async def test_follow_from_an_id_and_without_reconnect(store: Store, admin: Redis) -> None:
    first = await add(admin, store, 1)
    await add(admin, store, 2)
    follower = Follower(store, since=first, reconnect=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower.run)
        assert await follower.until(1) == ["2"]
        conn_id = await follower_id(admin)
        await admin.execute("CLIENT", "KILL", "ID", conn_id)
        await follower.until(2)
        assert isinstance(follower.error, RedisUnavailableError)
    assert [e.fields["n"] for e in follower.events] == ["2"]


async def test_follow_is_cancellable_while_redis_is_down(
    store: Store, private_server: EmbeddedServer
) -> None:
    await trio.to_thread.run_sync(private_server.stop)
    try:
        with trio.move_on_after(1) as scope:
            async for _ in store.events.follow():
                pytest.fail("no event can come from a stopped server")
        assert scope.cancelled_caught
    finally:
        await trio.to_thread.run_sync(private_server.start)


async def test_recent_after_and_last_id(store: Store, admin: Redis) -> None:
    assert await store.events.last_id() == "0-0"
    assert await store.events.recent(5) == []
    ids = [await add(admin, store, n) for n in range(5)]
    await admin.execute("XADD", store.keys.events, "*", "kind", "state", "agent", "a1", "n", "x")
    assert await store.events.last_id() != ids[-1]
    recent = await store.events.recent(3)
    assert [e.fields["n"] for e in recent] == ["3", "4", "x"]
    assert [e.fields["n"] for e in await store.events.recent(3, agent="a1")] == ["x"]
    assert recent[-1].kind == "state" and recent[-1].agent == "a1"
    after = await store.events.after(ids[1], count=2)
    assert [e.id for e in after] == ids[2:4]
