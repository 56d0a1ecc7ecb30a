"""The server rides out a Redis restart (its client reconnects like the runtime's), and a
call that cannot reach Redis in time is a tool error, never a crash."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from mcp import Client

from tests.townhall.conftest import data, error
from tinytown.model import TaskState
from tinytown.services.config import TownConfig
from tinytown.services.town import Town
from tinytown.store.server import EmbeddedServer
from tinytown.townhall import caller as caller_module
from tinytown.townhall.caller import Caller
from tinytown.townhall.server import build_server


@pytest.fixture
async def own_town(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Town]:
    """A town on its own embedded Redis (so the test may stop it), opened as `tt mcp`
    opens it: riding out outages."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    root = tmp_path_factory.mktemp("m") / "town"  # short: the socket path has a limit
    root.mkdir()
    TownConfig.create(root, f"m-{uuid.uuid4().hex[:10]}").save()
    town = await Town.connect(root, reconnect=True)
    try:
        yield town
    finally:
        await town.aclose()
        EmbeddedServer(root / ".tt").stop()


def server_of(town: Town) -> EmbeddedServer:
    return EmbeddedServer(Path(town.root) / ".tt")


async def test_a_call_spanning_a_redis_restart_succeeds(own_town: Town) -> None:
    town = own_town
    task = await town.backlog.add("survive the restart")
    async with Client(build_server(Caller(town), allow_spawn=False)) as client:
        assert data(await client.call_tool("get_task", {"task_id": task.id}))["id"] == task.id
        await trio.to_thread.run_sync(server_of(town).stop)
        results: list[object] = []

        async def call() -> None:
            results.append(await client.call_tool("list_tasks", {"state": "pending"}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()  # the call is waiting for Redis
            assert results == []
            await trio.to_thread.run_sync(server_of(town).start)
        listed = data(results[0])  # type: ignore[arg-type]
        assert [t["id"] for t in listed["tasks"]] == [task.id]
        # and the next call reuses the reconnected pool
        assert data(await client.call_tool("town_status", {}))["open_tasks"] == {"pending": 1}
    assert (await town.tasks.get(task.id)).state is TaskState.PENDING


async def test_redis_gone_too_long_is_a_tool_error(
    own_town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    town = own_town
    monkeypatch.setattr(caller_module, "CALL_TIMEOUT", 0.3)
    async with Client(build_server(Caller(town), allow_spawn=False)) as client:
        await trio.to_thread.run_sync(server_of(town).stop)
        sentence = error(await client.call_tool("town_status", {}))
        assert "did not answer within 0.3 s" in sentence
        await trio.to_thread.run_sync(server_of(town).start)
        assert data(await client.call_tool("town_status", {}))["agents"] == []
