"""`tt mcp` over stdio, started from the file `mcp_config_for` writes for an agent's CLI,
driven by the SDK's own client; the effects checked through `tt`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests.conftest import TtRunner
from tests.townhall.conftest import data, error
from tests.townhall.test_tools import AGENT_TOOLS
from tinytown.services.mcp.wiring import mcp_config_for, read_entry
from tinytown.services.town import Town
from tinytown.townhall.resources import EVENTS_URI, TASKS_URI


async def test_stdio_server_acts_as_the_agent(
    town: Town, tt: TtRunner, tt_env: dict[str, str], tmp_path: Path
) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    await town.spawn_agent("bob")
    mine = await town.tasks.assign("ann", "write the parser")
    theirs = await town.tasks.assign("bob", "write the lexer")
    entry = read_entry(mcp_config_for(town.root, ann, tt_env))
    params = StdioServerParameters(
        command=entry["command"], args=entry["args"], env=entry["env"], cwd=str(tmp_path)
    )  # started away from the town: it finds it through -t, as a CLI's child would
    async with Client(params) as client:
        assert {t.name for t in (await client.list_tools()).tools} == AGENT_TOOLS
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert resources == {TASKS_URI, EVENTS_URI}
        current = await client.read_resource(TASKS_URI)
        listed = json.loads(current.contents[0].text)  # type: ignore[union-attr]
        assert listed["agent"] == "ann" and [t["id"] for t in listed["tasks"]] == [mine.id]
        refused = error(
            await client.call_tool("complete_task", {"task_id": theirs.id, "result": "mine now"})
        )
        assert "may only complete its own tasks" in refused
        data(await client.call_tool("complete_task", {"task_id": mine.id, "result": "parsed"}))
        data(await client.call_tool("send_message", {"to": "bob", "text": "parser is in"}))
        events = await client.read_resource(EVENTS_URI)
        assert "parsed" in events.contents[0].text  # type: ignore[union-attr]
    shown = json.loads(tt("task", "show", mine.id, "--json").stdout)
    assert shown["state"] == "completed" and shown["result"] == "parsed"
    assert json.loads(tt("task", "show", theirs.id, "--json").stdout)["state"] == "assigned"
    inbox = tt("inbox", "bob")
    assert "from ann: parser is in" in inbox.stdout, inbox.stdout


def test_unknown_agent_identity_is_refused(town_dir: Path, tt_env: dict[str, str]) -> None:
    env = {**tt_env, "TT_AGENT_ID": "0b7c1a0e-0000-4000-8000-000000000000"}
    result = subprocess.run(
        [sys.executable, "-m", "tinytown", "mcp"],
        cwd=town_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "tt: No agent with id 0b7c1a0e-0000-4000-8000-000000000000."
    ]
    assert result.stdout == ""  # nothing on the protocol stream


async def test_stdio_server_runs_in_the_towns_command_server(
    town: Town, tt: TtRunner, tt_env: dict[str, str], tmp_path: Path
) -> None:
    """While `tt run` hosts the town, the `tt mcp` an agent's CLI starts every round runs in
    the town's command server (no second ~1 s of imports per round), with the same tools
    and the same identity."""
    ann = await (await town.spawn_agent("ann")).state()
    await town.spawn_agent("bob")
    started = tt("run", "--detach")
    assert started.returncode == 0, started.stderr
    try:
        served = {**tt_env, "TT_FORK_SERVER": "require"}
        with trio.fail_after(30):  # the server listens a moment after the town runs
            while subprocess.run(
                [sys.executable, "-m", "tinytown", "list"], cwd=town.root, env=served,
                capture_output=True,
            ).returncode != 0:  # fmt: skip
                await trio.sleep(0.05)
        entry = read_entry(mcp_config_for(town.root, ann, tt_env))
        params = StdioServerParameters(
            command=entry["command"],
            args=entry["args"],
            env={**entry["env"], "TT_FORK_SERVER": "require"},  # fails unless served
            cwd=str(tmp_path),
        )
        async with Client(params) as client:
            assert {t.name for t in (await client.list_tools()).tools} == AGENT_TOOLS
            data(await client.call_tool("send_message", {"to": "bob", "text": "served"}))
        inbox = tt("inbox", "bob")
        assert "from ann: served" in inbox.stdout, inbox.stdout
    finally:
        tt("stop", "--now")
