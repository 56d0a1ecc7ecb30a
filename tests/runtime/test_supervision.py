"""The supervisor's restart policy and the wake hub, under trio's autojump clock."""

from __future__ import annotations

import itertools

import trio
import trio.testing

from tinytown import AgentState
from tinytown.runtime.supervisor import Supervisor
from tinytown.runtime.town_runtime import Runtime
from tinytown.runtime.wakeups import WakeHub
from tinytown.services.town import Town


class CrashingActor:
    """Stands in for an AgentActor whose run() raises a number of times."""

    def __init__(self, agent_id: str, crashes: int) -> None:
        self.id = agent_id
        self.name = "crashy"
        self.crashes = crashes
        self.runs: list[float] = []
        self.done = trio.Event()

    async def run(self) -> None:
        self.runs.append(trio.current_time())
        if len(self.runs) <= self.crashes:
            raise RuntimeError("boom")

    def reset(self) -> None:
        pass


async def test_crashing_actor_restarts_with_backoff_then_errors(
    town: Town, autojump_clock: trio.testing.MockClock
) -> None:
    handle = await town.spawn_agent("crashy")
    rt = Runtime(town)
    supervisor = Supervisor(rt)
    limit = int(town.config.setting("runtime.max_restarts"))
    actor = CrashingActor(handle.id, crashes=limit + 1)
    await supervisor._supervise(actor)  # type: ignore[arg-type]
    gaps = [b - a for a, b in zip(actor.runs, actor.runs[1:], strict=False)]
    assert len(actor.runs) == limit + 1
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps))
    agent = await handle.state()
    assert agent.state is AgentState.ERROR and "boom" in (agent.state_reason or "")
    kinds = [e.kind for e in await town.messages.recent_events(50)]
    assert kinds.count("crash") == limit + 1


async def test_actor_recovering_after_a_crash_is_not_marked(
    town: Town, autojump_clock: trio.testing.MockClock
) -> None:
    handle = await town.spawn_agent("flaky")
    supervisor = Supervisor(Runtime(town))
    actor = CrashingActor(handle.id, crashes=2)
    await supervisor._supervise(actor)  # type: ignore[arg-type]
    assert len(actor.runs) == 3 and actor.done.is_set()
    assert (await handle.state()).state is AgentState.STARTING


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
        await trio.sleep(1)
        hub.notify_all()  # a reconnect wakes everyone
    assert hub.token("b") != token
