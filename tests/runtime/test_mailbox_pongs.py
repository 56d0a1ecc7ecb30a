"""Pings answered by the runtime in batches: serialised once per batch, one script call
per batch, filed by the supervisor in one call per batch; nothing lost or doubled."""

from __future__ import annotations

import pytest

from tests.redis_commands import record_commands
from tests.runtime.conftest import eventually
from tinytown.model import SUPERVISOR_ID, Message, MessageType, Ping, dumps, loads
from tinytown.model.ids import new_id
from tinytown.runtime.mailbox import _Pongs
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town


@pytest.mark.parametrize(
    "sender", [new_id(), SUPERVISOR_ID, 'not "an" id \\ ✓', "@tt-to@", "@tt-id@"]
)
def test_a_pong_from_the_template_is_the_models_own_json(sender: str) -> None:
    pongs = _Pongs(new_id())
    for _ in range(3):  # the first builds the template, the others reuse it
        ping = Message.new(sender, pongs.agent_id, Ping())
        pong, payload = pongs.answer(ping)
        assert payload == dumps(pong)
        assert loads(Message, payload) == pong
        assert (pong.recipient, pong.correlation_id, pong.type) == (
            sender,
            ping.id,
            MessageType.PONG,
        )


async def test_a_batch_of_pings_is_answered_and_filed_in_one_call_each(
    town: Town, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    await handle.interrupt()  # the pings wait in the inbox; one wake-up takes them all
    pings = [Message.new(SUPERVISOR_ID, handle.id, Ping()) for _ in range(20)]
    ops = []
    for ping in pings:
        ops += town.store.deliver_ops(ping, event=False)
    await town.store.run_ops(ops)
    sent = record_commands(monkeypatch, town.store)
    await handle.resume()

    async def filed() -> list[Message] | None:
        # inbox() of the supervisor lists its mail AND what still waits in its inbox:
        # wait until the supervisor took and filed every pong (its inbox empty).
        mail, inflight = await town.messages.inbox(SUPERVISOR_ID)
        pongs = [m for m in mail if m.type is MessageType.PONG]
        waiting = await town.redis.execute("LLEN", town.keys.inbox(SUPERVISOR_ID))
        return pongs if len(pongs) >= len(pings) and not inflight and not waiting else None

    pongs = await eventually(filed, timeout=20)
    assert sorted(p.correlation_id for p in pongs) == sorted(p.id for p in pings)  # type: ignore[union-attr]
    assert len({p.id for p in pongs}) == len(pings)  # type: ignore[union-attr]
    assert await town.redis.execute("LLEN", town.keys.inflight(handle.id)) == 0
    assert await town.redis.execute("LLEN", town.keys.inbox(handle.id)) == 0
    # the agent: one script call acknowledging all 20 pings and delivering 20 pongs
    inflight = town.keys.inflight(handle.id)
    acks = [c for c in sent if c[0] == "SCRIPT" and "LREM" in c and inflight in c]
    assert len(acks) == 1
    assert acks[0].count(inflight) == len(pings)
    assert acks[0].count("PUBLISH") == 1  # one wake-up for the supervisor, not 20
    # the supervisor files its mail in as few calls as it took batches (never one per pong)
    filings = [c for c in sent if c[0] == "SCRIPT" and town.keys.mail in c]
    assert sum(c.count(town.keys.mail) for c in filings) == len(pings) + len(filings)
    assert len(filings) < len(pings)
    kinds = [e.kind for e in await town.messages.recent_events(200)]
    assert kinds.count("mail") >= len(pings)
