"""Control requests are parsed into a typed request; nothing malformed, and no handler
error, stops the town (issue 9, point 3)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import trio

from tinytown import AgentState
from tinytown.errors import InvalidInputError
from tinytown.model.control import ControlRequest, Verb, parse_request
from tinytown.model.ids import SUPERVISOR_ID, new_id
from tinytown.runtime.agent_actor import AgentActor
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town

AGENT = new_id()


@pytest.mark.parametrize(
    "raw",
    [
        '["kill"]',
        "5",
        "null",
        '"kill"',
        "not json",
        json.dumps({"agent_id": AGENT}),  # no verb
        json.dumps({"verb": "", "agent_id": AGENT}),
        json.dumps({"verb": "explode", "agent_id": AGENT}),
        json.dumps({"verb": ["kill"], "agent_id": AGENT}),
        json.dumps({"verb": "kill"}),  # no agent
        json.dumps({"verb": "kill", "agent_id": "../../etc"}),
        json.dumps({"verb": "kill", "agent_id": 5}),
        json.dumps({"verb": "shutdown", "agent_id": AGENT}),  # the town's, not an agent's
        json.dumps({"verb": "shutdown", "now": "yes"}),
    ],
)
def test_malformed_requests_are_refused_with_one_sentence(raw: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        parse_request(raw)
    assert "\n" not in str(caught.value)


def test_a_well_formed_request() -> None:
    rid = new_id()
    parsed = parse_request(json.dumps({"id": rid, "verb": "kill", "agent_id": AGENT}))
    assert parsed == ControlRequest(Verb.KILL, AGENT, rid) and parsed.wants_reply
    assert not parse_request(json.dumps({"verb": "reconcile", "agent_id": AGENT})).wants_reply
    # an id that is not one of ours is not used as a key name
    odd = parse_request(json.dumps({"id": "x:y", "verb": "kill", "agent_id": AGENT}))
    assert odd.id is None


def test_a_shutdown_request_is_for_the_town() -> None:
    rid = new_id()
    parsed = parse_request(json.dumps({"id": rid, "verb": "shutdown", "now": True}))
    assert parsed == ControlRequest(Verb.SHUTDOWN, SUPERVISOR_ID, rid, now=True)
    assert parsed.wants_reply and parsed.verb.town_wide
    assert not parse_request(json.dumps({"verb": "shutdown"})).now


@pytest.fixture
async def echoed(town: Town) -> AsyncIterator[tuple[Runtime, list[str]]]:
    lines: list[str] = []
    rt = Runtime(town, lines.append, echo_events=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        yield rt, lines
        nursery.cancel_scope.cancel()


async def push(town: Town, *raws: str) -> None:
    for raw in raws:
        await town.redis.execute("RPUSH", town.keys.control, raw)
    await town.redis.execute("PUBLISH", town.keys.wake, "control")


async def reply(town: Town, request_id: str) -> dict:
    got = await town.redis.execute("BLPOP", town.keys.reply(request_id), 10)
    assert got is not None, "no reply"
    return json.loads(got[1])


async def test_bad_entries_are_answered_reported_and_the_town_goes_on(
    town: Town, echoed: tuple[Runtime, list[str]]
) -> None:
    _, lines = echoed
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    bad_id, unknown_id = new_id(), new_id()
    await push(
        town,
        '["kill"]',
        "5",
        "null",
        '"kill"',
        json.dumps({"id": bad_id, "verb": "kill"}),
        json.dumps({"id": unknown_id, "verb": "explode", "agent_id": handle.id}),
    )
    assert (await reply(town, bad_id))["ok"] is False
    answer = await reply(town, unknown_id)
    assert answer["ok"] is False and "explode" in answer["error"]
    # every one was reported and recorded, and none is left claimed
    errors = [e for e in await town.messages.recent_events(100) if e.kind == "control-error"]
    assert len(errors) == 6
    assert sum("control request refused" in line for line in lines) == 6
    assert await town.redis.execute("LLEN", f"{town.keys.control}:claimed") == 0
    # the town still obeys
    assert (await handle.interrupt()).state is AgentState.PAUSED
    assert (await handle.resume()).state is AgentState.IDLE


async def test_a_handler_bug_becomes_an_error_reply(
    town: Town, echoed: tuple[Runtime, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)

    async def broken(self: AgentActor) -> None:
        raise AttributeError("'list' object has no attribute 'get'")

    monkeypatch.setattr(AgentActor, "interrupt", broken)
    rid = new_id()
    await push(town, json.dumps({"id": rid, "verb": "interrupt", "agent_id": handle.id}))
    answer = await reply(town, rid)
    assert answer == {"ok": False, "error": "AttributeError: 'list' object has no attribute 'get'"}
    kinds = [e.kind for e in await town.messages.recent_events(50)]
    assert "control-error" in kinds
    assert (await handle.close()).state in (AgentState.DRAINING, AgentState.COLD)  # obeys
    assert (await handle.wait(timeout=20)).state is AgentState.COLD
