"""The supervisor's restart policy, driving the real agent actor (its start-up made to
crash), and the wake hub; under trio's autojump clock."""

from __future__ import annotations

import gc
import itertools

import pytest
import trio
import trio.testing

from tests.runtime.conftest import eventually
from tinytown import AgentState
from tinytown.errors import CliNotFoundError
from tinytown.runtime import agent_actor
from tinytown.runtime.town_runtime import Runtime
from tinytown.runtime.wakeups import WakeHub
from tinytown.services.town import Town


class CrashingStart:
    """Replaces the actor's CLI check: the real actor runs up to it and crashes there
    ``crashes`` times (recording when), then starts normally."""

    def __init__(self, crashes: int) -> None:
        self.crashes = crashes
        self.runs: list[float] = []
        self.crashed = trio.Event()

    def __call__(self, *args: object, **kwargs: object) -> None:
        self.runs.append(trio.current_time())
        if len(self.runs) <= self.crashes:
            self.crashed.set()
            raise RuntimeError("boom")




async def crash_events(town: Town) -> int:
    return [e.kind for e in await town.messages.recent_events(100)].count("crash")


async def test_crashing_actor_restarts_with_backoff_then_errors(
    town: Town, monkeypatch: pytest.MonkeyPatch, io_clock: trio.testing.MockClock
) -> None:
    limit = int(town.config.setting("runtime.max_restarts"))
    crashing = CrashingStart(crashes=limit + 10)
    monkeypatch.setattr(agent_actor, "check_cli_installed", crashing)
    rt = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        handle = await town.spawn_agent("crashy")
        agent = await handle.wait(timeout=600)
        nursery.cancel_scope.cancel()
    assert agent.state is AgentState.ERROR and "boom" in (agent.state_reason or "")
    # the real actor ran limit + 1 times, each later restart after a longer wait
    assert len(crashing.runs) == limit + 1
    gaps = [b - a for a, b in itertools.pairwise(crashing.runs)]
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps))
    assert gaps[0] >= 0.25
    assert await crash_events(town) == limit + 1


async def test_actor_recovering_after_a_crash_goes_idle(
    town: Town, monkeypatch: pytest.MonkeyPatch, io_clock: trio.testing.MockClock
) -> None:
    crashing = CrashingStart(crashes=2)
    monkeypatch.setattr(agent_actor, "check_cli_installed", crashing)
    rt = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        handle = await town.spawn_agent("flaky")
        agent = await handle.wait(idle=True, timeout=600)
        nursery.cancel_scope.cancel()
    assert agent.state is AgentState.IDLE and agent.started_at
    assert len(crashing.runs) == 3  # two crashes, then the run that went idle
    assert await crash_events(town) == 2


async def test_missing_cli_is_an_error_state_not_a_crash(
    town: Town, monkeypatch: pytest.MonkeyPatch, io_clock: trio.testing.MockClock
) -> None:
    def missing(*args: object, **kwargs: object) -> None:
        raise CliNotFoundError("CLI 'x' needs 'x', which is not installed or not on PATH.")

    monkeypatch.setattr(agent_actor, "check_cli_installed", missing)
    rt = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        handle = await town.spawn_agent("nocli")
        agent = await handle.wait(timeout=600)
        nursery.cancel_scope.cancel()
    assert agent.state is AgentState.ERROR and "not installed" in (agent.state_reason or "")
    assert await crash_events(town) == 0


async def test_one_crashing_actor_never_ends_another(
    town: Town, monkeypatch: pytest.MonkeyPatch, io_clock: trio.testing.MockClock
) -> None:
    real = agent_actor.check_cli_installed

    def crash_for_bad(argv: list[str], cli_name: str, **kwargs: object) -> None:
        if cli_name == "bad":
            raise RuntimeError("boom")
        real(argv, cli_name, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(agent_actor, "check_cli_installed", crash_for_bad)
    town.config.data["agent_clis"]["bad"] = dict(town.config.data["agent_clis"]["scripted"])
    rt = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        good = await town.spawn_agent("good")
        bad = await town.spawn_agent("bad", "bad")
        assert (await bad.wait(timeout=600)).state is AgentState.ERROR
        agent = await good.wait(idle=True, timeout=600)
        assert agent.state is AgentState.IDLE
        assert rt.supervisor.live_count() == 1  # the good one is still supervised
        nursery.cancel_scope.cancel()


async def test_wake_hub_never_misses_a_wakeup(autojump_clock: trio.testing.MockClock) -> None:
    hub = WakeHub()
    token = hub.token("a")
    hub.notify("a")  # lands between the check and the wait
    with trio.fail_after(1):
        await hub.wait("a", token)
    token = hub.token("a")
    with trio.move_on_after(5) as scope:
        await hub.wait("a", token)  # nothing happens: it blocks, cancellably
    assert scope.cancelled_caught
    token = hub.token("b")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.wait, "b", token)
        await trio.testing.wait_all_tasks_blocked()
        hub.notify_all()  # a reconnect wakes everyone
    assert hub.token("b") is not token


async def test_wake_hub_memory_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    """Regression (issue 9): the hub kept a counter for every key it ever saw."""
    hub = WakeHub()
    for i in range(5000):
        key = f"agent-{i}"
        token = hub.token(key)
        hub.notify(key)
        await hub.wait(key, token)
        hub.token(key)  # a token taken and dropped without waiting
        hub.notify(f"never-waited-{i}")
        hub.published(f"{key}\n{{}}")  # a direct delivery, taken by the key's mailbox
        assert hub.take_direct(key) == ["{}"]
    del token
    gc.collect()
    assert len(hub) == 0
    # no other per-key state: delivered messages are kept only until their mailbox takes them
    assert len(vars(hub)) == 4 and vars(hub)["_direct"] == {}


async def test_supervised_agents_idle_interface(
    town: Town, runtime: Runtime, io_clock: trio.testing.MockClock
) -> None:
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=600)

    async def idle() -> bool:
        return [i for i, _ in runtime.supervisor.idle_agents()] == [handle.id]

    await eventually(idle, timeout=600)
    runtime.supervisor.mark_busy(handle.id)
    assert runtime.supervisor.idle_agents() == []
    runtime.supervisor.mark_busy("no-such-agent")  # gone: a no-op, never a KeyError


async def test_a_failing_supervisor_loop_restarts_and_loses_nothing(
    town: Town, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (or a lost reply) in the supervisor's mail loop: reported, the loop starts
    again and handles the mail it held; the town goes on."""
    from tinytown.model import Informational, Message
    from tinytown.model.ids import SUPERVISOR_ID, new_id
    from tinytown.runtime.supervisor import Supervisor

    original = Supervisor._mail_ops
    failed: list[str] = []

    def fail_once(self: Supervisor, raw: str, msg: Message) -> list[list[str]]:
        if not failed:
            failed.append(msg.text)
            raise RuntimeError("bug")
        return original(self, raw, msg)

    monkeypatch.setattr(Supervisor, "_mail_ops", fail_once)
    message = Message.new(new_id(), SUPERVISOR_ID, Informational("hello boss"))
    await town.store.run_ops(town.store.deliver_ops(message))

    async def received() -> bool:
        return any(m.id == message.id for m in runtime.mail)

    await eventually(received)
    assert failed == ["hello boss"]
    assert await town.redis.execute("LLEN", town.keys.inflight(SUPERVISOR_ID)) == 0
