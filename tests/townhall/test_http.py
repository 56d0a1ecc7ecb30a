"""`tt mcp --http`: the streamable HTTP transport under trio (hypercorn), the bearer token,
and the refusal to expose the town without one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import TtRunner
from tests.townhall.conftest import data
from tests.townhall.test_tools import AGENT_TOOLS, SUPERVISOR_TOOLS
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.mcp import token as mcptoken
from tinytown.services.town import Town
from tinytown.townhall.caller import Caller
from tinytown.townhall.http import serve_http
from tinytown.townhall.server import build_server

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"},
    },
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def test_http_server_needs_the_token_once_one_exists(town: Town) -> None:
    token = mcptoken.new_token(town.root)
    digest = mcptoken.stored_digest(town.root)
    app = build_server(Caller(town), allow_spawn=False)
    await town.spawn_agent("ann")
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_http, app, "127.0.0.1", 0, digest)
        async with httpx2.AsyncClient() as raw:  # no token, a wrong one: 401, nothing runs
            for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
                refused = await raw.post(url, json=INIT, headers={**HEADERS, **auth})
                assert refused.status_code == 401, auth
                assert refused.headers["www-authenticate"].startswith("Bearer")
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == AGENT_TOOLS | SUPERVISOR_TOOLS
            made = data(await client.call_tool("assign", {"agent": "ann", "description": "go"}))
        nursery.cancel_scope.cancel()
    task = await town.tasks.get(made["id"])
    assert task.assigned_by == SUPERVISOR_ID and task.state.value == "assigned"


async def test_token_new_through_tt(town: Town, tt: TtRunner) -> None:
    made = tt("mcp", "token", "new")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert len(token) >= 40 and "shown once" in made.stderr
    stored = (town.root / ".tt" / "mcp" / "token.json").read_text()
    assert token not in stored and token not in (town.root / "tinytown.toml").read_text()
    assert oct((town.root / ".tt" / "mcp" / "token.json").stat().st_mode & 0o777) == "0o600"
    digest = mcptoken.stored_digest(town.root)
    assert digest and mcptoken.verify(token, digest) and not mcptoken.verify(token[:-1], digest)
    second = tt("mcp", "token", "new").stdout.strip()
    digest = mcptoken.stored_digest(town.root)
    assert digest and mcptoken.verify(second, digest) and not mcptoken.verify(token, digest)


def test_refusals(town_dir: Path, tt: TtRunner, tt_env: dict[str, str]) -> None:
    exposed = tt("mcp", "--http", "--bind", "0.0.0.0:0")
    assert exposed.returncode == 1
    assert exposed.stderr.startswith("tt: Refusing to serve MCP on 0.0.0.0 without a token")
    bad = tt("mcp", "--http", "--bind", "nowhere")
    assert bad.returncode == 1 and "--bind needs HOST:PORT" in bad.stderr
    assert tt("mcp", "--bind", "127.0.0.1:1").returncode == 2  # --bind without --http
    env = {**tt_env, "TT_AGENT_ID": "0b7c1a0e-0000-4000-8000-000000000000"}
    agent = subprocess.run(
        [sys.executable, "-m", "tinytown", "mcp", "--http"],
        cwd=town_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert agent.returncode == 1 and "an agent (TT_AGENT_ID is set) cannot start it" in agent.stderr
    assert not (town_dir / ".tt" / "mcp" / "token.json").exists()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("example.org", False),
    ],
)
def test_which_hosts_need_a_token(host: str, loopback: bool) -> None:
    assert mcptoken.is_loopback(host) is loopback


async def test_tt_mcp_http_serves_a_client(
    town: Town, tt: TtRunner, tt_env: dict[str, str]
) -> None:
    token = tt("mcp", "token", "new").stdout.strip()
    await town.spawn_agent("ann")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinytown", "mcp", "--http", "--bind", "0.0.0.0:0"],
        cwd=town.root,
        env=tt_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with trio.fail_after(60):
            line = await trio.to_thread.run_sync(proc.stdout.readline)
        assert "bearer token required" in line, line + (proc.stderr.read() if proc.stderr else "")
        url = line.split(" on ", 1)[1].split(" ", 1)[0].replace("0.0.0.0", "127.0.0.1")
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            data(await client.call_tool("broadcast", {"text": "standup at 10"}))
    finally:
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave the server behind, even when the test fails
            proc.wait()
            raise
    assert proc.returncode == 0  # stopped by its signal handler, cleanly
    inbox = json.loads(tt("inbox", "ann", "--json").stdout)
    assert [m["summary"] for m in inbox["ann"]["queued"]] == ["standup at 10"]
