"""Fixtures of the store's tests: clients of the session's server and a fresh key."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest

from tinytown.store.client import Redis
from tinytown.store.server import EmbeddedServer


@contextlib.asynccontextmanager
async def _client(server: EmbeddedServer) -> AsyncIterator[Redis]:
    client = Redis(server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis(redis_server: EmbeddedServer) -> AsyncIterator[Redis]:
    async with _client(redis_server) as client:
        yield client


@pytest.fixture
async def other(redis_server: EmbeddedServer) -> AsyncIterator[Redis]:
    """A second, independent client, to look at (and hold) the server from outside."""
    async with _client(redis_server) as client:
        yield client


@pytest.fixture
def key() -> str:
    return f"tt-test:{uuid.uuid4().hex}"
