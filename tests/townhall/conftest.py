"""Fixtures for the MCP server tests: the SDK's own client on a town's server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult

from tinytown.model import Agent
from tinytown.services.town import Town
from tinytown.townhall.caller import Caller
from tinytown.townhall.server import build_server

Connect = Callable[..., AbstractAsyncContextManager[Client]]


@pytest.fixture
def hall(town: Town) -> Connect:
    """``async with hall(agent=None, allow_spawn=False) as client``: the SDK's client on
    an in-process server acting as ``agent`` (None: the supervisor)."""

    @asynccontextmanager
    async def connect(
        agent: Agent | None = None, allow_spawn: bool = False
    ) -> AsyncIterator[Client]:
        app = build_server(Caller(town, agent), allow_spawn=allow_spawn)
        async with Client(app) as client:
            yield client

    return connect


def data(result: CallToolResult) -> Any:
    """A successful call's JSON answer (fails the test on a tool error)."""
    assert not result.is_error, result.content
    text = result.content[0].text  # type: ignore[union-attr]
    return json.loads(text)


def error(result: CallToolResult) -> str:
    """A failed call's one sentence (fails the test if the call succeeded)."""
    assert result.is_error, result.content
    return str(result.content[0].text)  # type: ignore[union-attr]
