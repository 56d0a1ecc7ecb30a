"""Direct delivery (store/scripts.py FLAT ``TT.DELIVER``, runtime/wakeups.py, mailbox.py):
a message sent to an idle agent of a running town with an empty inbox goes straight into
its flight and is published whole, so the agent holds it without a round trip; it is
never lost (an announcement lost with the subscriber is found in flight) nor held twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis as redis_py

from tests.redis_commands import record_commands
from tests.runtime.conftest import eventually
from tinytown.model import SUPERVISOR_ID, AgentState, Message, MessageType, Ping, dumps, loads
from tinytown.model.ids import new_id
from tinytown.runtime.mailbox import Mailbox
from tinytown.runtime.town_runtime import Runtime
from tinytown.runtime.wakeups import WakeHub
from tinytown.services.handle import AgentHandle
from tinytown.services.town import Town
from tinytown.store.flat import run_flat


class Channel:
    """What the town's wake channel carries (a redis-py subscriber)."""

    def __init__(self, url: str, channel: str) -> None:
        self.client = redis_py.Redis.from_url(url, decode_responses=True)
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(channel)
        assert self.pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]

    def next(self) -> str:
        message = self.pubsub.get_message(timeout=5)
        assert message is not None, "nothing published"
        return str(message["data"])

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


async def _set_state(town: Town, agent_id: str, state: str) -> None:
    key = town.keys.agent(agent_id)
    record = json.loads(await town.redis.execute("GET", key))
    record["state"] = state
    await town.redis.execute("SET", key, json.dumps(record, separators=(",", ":")))


Lost = list[tuple[WakeHub, str]]


def _losing_announcements(monkeypatch: pytest.MonkeyPatch) -> tuple[Lost, Any]:
    """From now on the hub never processes a direct delivery's announcement (as if each
    were lost with the subscriber's connection); returns them (to replay late) and the
    hub's own handler."""
    lost: Lost = []
    published = WakeHub.published

    def losing(self: WakeHub, data: str) -> None:
        if "\n" in data:
            lost.append((self, data))
            return
        published(self, data)

    monkeypatch.setattr(WakeHub, "published", losing)
    return lost, published


async def _answered(town: Town, ping: Message) -> Any:
    """The supervisor's mail answering ``ping`` (a pong), if it came."""
    mail, _ = await town.messages.inbox(SUPERVISOR_ID)
    return [m for m in mail if m.correlation_id == ping.id]


async def _pinged_unannounced(
    town: Town, start_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[Runtime, AgentHandle, Message, Lost, Any]:
    """A running town whose hub loses direct deliveries' announcements, an idle agent, and a
    ping delivered into its flight (announced, lost): (runtime, agent, ping, the lost
    announcements, the hub's own handler to replay them)."""
    lost, published = _losing_announcements(monkeypatch)
    rt = await start_runtime()
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    ping = await town.messages.send(handle.id, Ping())

    async def was_lost() -> Any:
        return lost

    await eventually(was_lost, timeout=20)
    return rt, handle, ping, lost, published


async def test_the_delivery_op_chooses_flight_or_inbox(town: Town, redis_url: str) -> None:
    agent = (await town.agents.spawn("w", "true")).id
    inbox, inflight = town.keys.inbox(agent), town.keys.inflight(agent)
    channel = Channel(redis_url, town.keys.wake)

    async def deliver() -> tuple[str, list[str], list[str], str]:
        message = Message.new(SUPERVISOR_ID, agent, Ping())
        await run_flat(town.store, town.store.deliver_ops(message, event=False, direct=True))
        got = (
            await town.redis.execute("LRANGE", inbox, 0, -1),
            await town.redis.execute("LRANGE", inflight, 0, -1),
        )
        await town.redis.execute("DEL", inbox, inflight)
        return dumps(message), got[0], got[1], channel.next()

    try:
        await _set_state(town, agent, AgentState.IDLE.value)
        raw, queued, flying, published = await deliver()  # no runtime holds the lease
        assert (queued, flying, published) == ([raw], [], agent)
        await town.redis.execute("SET", town.keys.runtime, "{}", "EX", 30)  # a running town
        raw, queued, flying, published = await deliver()
        assert (queued, flying, published) == ([], [raw], f"{agent}\n{raw}")  # taken already
        await town.redis.execute("RPUSH", inbox, "waiting")  # an inbox with work in it
        message = Message.new(SUPERVISOR_ID, agent, Ping())
        await run_flat(town.store, town.store.deliver_ops(message, event=False, direct=True))
        assert await town.redis.execute("LRANGE", inbox, 0, -1) == ["waiting", dumps(message)]
        assert channel.next() == agent
        await town.redis.execute("DEL", inbox)
        await _set_state(town, agent, AgentState.PAUSED.value)  # not taking messages
        raw, queued, flying, published = await deliver()
        assert (queued, flying, published) == ([raw], [], agent)
    finally:
        await town.redis.execute("DEL", town.keys.runtime)
        channel.close()


async def test_an_idle_agent_holds_a_message_without_a_round_trip(
    town: Town, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    sent = record_commands(monkeypatch, town.store)
    took: list[int] = []  # commands sent when the agent had taken the message

    def on_take(agent_id: str, count: int) -> None:
        if agent_id == handle.id and count and not took:
            took.append(len(sent))

    runtime.on_take = on_take
    ping = await town.messages.send(handle.id, Ping())

    await eventually(lambda: _answered(town, ping), timeout=20)
    assert took, "the agent never took the ping"
    inbox = town.keys.inbox(handle.id)
    touching = [c for c in sent[: took[0]] if inbox in c]  # (the test's own reads aside)
    assert len(touching) == 1 and "TT.DELIVER" in touching[0]  # the send, and no take
    assert await town.redis.execute("LLEN", town.keys.inflight(handle.id)) == 0  # acked


async def test_a_lost_announcement_is_found_in_flight_after_the_reconnect(
    town: Town, start_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subscriber's connection lost with the announcement: the message waits in flight
    (never outside a list) and the resubscription (epoch bump, every key woken) has the
    agent read its flight again."""
    rt, handle, ping, _, _ = await _pinged_unannounced(town, start_runtime, monkeypatch)
    flying = await town.redis.execute("LRANGE", town.keys.inflight(handle.id), 0, -1)
    assert flying == [dumps(ping)]
    hub = rt.context.hub
    hub.epoch += 1  # what a resubscription does (runtime/wakeups.py WakeHub.run)
    hub.notify_all()

    assert len(await eventually(lambda: _answered(town, ping), timeout=20)) == 1  # type: ignore[arg-type]


async def test_a_message_read_in_flight_is_not_held_again_when_announced_late(
    town: Town, runtime: Runtime
) -> None:
    """recover() read the message in flight; its announcement arrives after it was handled
    and acknowledged: it is not held a second time (it would be handled twice)."""
    agent = new_id()  # no actor: this test's mailbox is the only reader
    mailbox = Mailbox(runtime.context, agent, lambda: "x")
    early = dumps(Message.new(SUPERVISOR_ID, agent, Ping()))
    await town.redis.execute("RPUSH", town.keys.inflight(agent), early)
    held = await mailbox.recover()
    assert [raw for raw, _ in held] == [early]
    await mailbox.ack(held)  # handled: acknowledged and forgotten
    later = dumps(Message.new(SUPERVISOR_ID, agent, Ping()))
    await town.redis.execute("RPUSH", town.keys.inflight(agent), later)
    runtime.context.hub.published(f"{agent}\n{early}")  # the late announcement
    runtime.context.hub.published(f"{agent}\n{later}")
    taken = await mailbox.take()
    assert [raw for raw, _ in taken] == [later]
    assert [m.type for _, m in taken] == [MessageType.PING]
    assert mailbox.unchecked  # the inbox is looked at by the next take
    assert loads(Message, later).recipient == agent


async def test_a_message_pushed_with_a_delivered_one_is_taken_too(
    town: Town, runtime: Runtime
) -> None:
    """One wake-up for a message delivered into flight and one pushed into the inbox in
    the same step: after holding the first, the agent looks at its inbox before waiting."""
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    first = Message.new(SUPERVISOR_ID, handle.id, Ping())
    second = Message.new(SUPERVISOR_ID, handle.id, Ping())
    ops = town.store.deliver_ops(first, event=False, direct=True)  # into flight
    ops += town.store.deliver_ops(second, event=False)  # pushed, the same id woken
    await run_flat(town.store, ops)

    async def both() -> Any:
        mail, _ = await town.messages.inbox(SUPERVISOR_ID)
        return {first.id, second.id} <= {m.correlation_id for m in mail}

    await eventually(both, timeout=20)


async def test_closing_returns_a_delivered_message_not_announced_yet(
    town: Town, start_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, handle, ping, lost, published = await _pinged_unannounced(town, start_runtime, monkeypatch)
    await handle.close()

    async def cold() -> Any:
        return (await town.agents.get(handle.id)).state is AgentState.COLD

    await eventually(cold, timeout=20)
    for hub, data in lost:  # the announcement, too late: changes nothing
        published(hub, data)
    # Queued again for the agent's next start, not left in the flight of a cold agent.
    assert await town.redis.execute("LRANGE", town.keys.inbox(handle.id), 0, -1) == [dumps(ping)]
    assert await town.redis.execute("LLEN", town.keys.inflight(handle.id)) == 0


async def test_no_cold_agent_with_a_message_in_flight(
    town: Town, start_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idle timeout comes while a delivered message's announcement was lost: the
    agent does not go cold with the message in flight; it reads its flight and answers."""
    town.config.data["agent"] = {"idle_timeout_secs": 1}
    _, handle, ping, lost, _ = await _pinged_unannounced(town, start_runtime, monkeypatch)

    await eventually(
        lambda: _answered(town, ping), timeout=20
    )  # (a cold agent would never have answered)
    assert lost  # it was never announced

    async def cold_and_empty() -> Any:
        agent = await town.agents.get(handle.id)
        flying = await town.redis.execute("LLEN", town.keys.inflight(handle.id))
        return agent.state is AgentState.COLD and flying == 0

    await eventually(cold_and_empty, timeout=20)  # then idle long enough: cold, nothing held
