"""Fixtures of the store's tests: clients of the session's server and a fresh key."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tinytown.store.client import Redis
from tinytown.store.server import EmbeddedServer


@pytest.fixture
async def redis(redis_server: EmbeddedServer) -> AsyncIterator[Redis]:
    client = Redis(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def other(redis_server: EmbeddedServer) -> AsyncIterator[Redis]:
    """A second, independent client, to look at (and hold) the server from outside."""
    client = Redis(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def key() -> str:
    return f"tt-test:{uuid.uuid4().hex}"
