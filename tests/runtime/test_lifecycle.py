"""The agent actor's lifecycle: one state, one transition table (runtime/lifecycle.py)."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from tinytown.errors import InvalidTransitionError
from tinytown.runtime.lifecycle import TRANSITIONS, Life, Lifecycle

L = Life
ACTIVE = {L.STARTING, L.IDLE, L.ROUND, L.PAUSED, L.PAUSED_ROUND}
INTENTS = {L.DRAINING, L.STOPPING, L.KILLED}

#: Written out independently of the code: what each event does from each state.
#: Intents (draining, stopping, killed) are final for a run and survive a restart; only
#: kill overrides close and shutdown; no round begins unless the actor is idle.
EXPECTED: dict[str, dict[Life, Life]] = {
    "ready": {L.STARTING: L.IDLE},
    "interrupt": {
        L.STARTING: L.PAUSED,
        L.IDLE: L.PAUSED,
        L.PAUSED: L.PAUSED,
        L.ROUND: L.PAUSED_ROUND,
        L.PAUSED_ROUND: L.PAUSED_ROUND,
    },
    "resume": {L.PAUSED: L.IDLE, L.PAUSED_ROUND: L.ROUND},
    "close": {s: L.DRAINING for s in ACTIVE | {L.DRAINING}},
    "begin_round": {L.IDLE: L.ROUND},
    "end_round": {
        L.ROUND: L.IDLE,
        L.PAUSED_ROUND: L.PAUSED,
        L.DRAINING: L.DRAINING,
        L.STOPPING: L.STOPPING,
        L.KILLED: L.KILLED,
    },
    "stop": {**{s: L.STOPPING for s in ACTIVE}, **{s: s for s in INTENTS}},
    "kill": {s: L.KILLED for s in ACTIVE | {L.DRAINING, L.STOPPING}},
    "restart": {**{s: L.STARTING for s in ACTIVE}, **{s: s for s in INTENTS}},
}


def test_the_table_is_the_expected_one() -> None:
    assert set(TRANSITIONS) == set(EXPECTED)


@pytest.mark.parametrize(("event", "state"), list(itertools.product(sorted(EXPECTED), list(Life))))
def test_every_event_from_every_state(event: str, state: Life) -> None:
    life = Lifecycle(state)
    target = EXPECTED[event].get(state)
    if target is None:
        with pytest.raises(InvalidTransitionError):
            life.fire(event)
        assert life.state is state  # a refused event changes nothing
        assert not life.try_fire(event)
    else:
        assert life.fire(event) is target and life.state is target


def test_intents_survive_a_restart_and_no_round_begins() -> None:
    for intent in INTENTS:
        life = Lifecycle(intent)
        life.fire("restart")
        assert life.state is intent and life.state.intent
        assert not life.can("begin_round")


async def test_idle_since_only_while_idle() -> None:
    life = Lifecycle()
    assert not life.mark_idle()  # starting: not idle
    life.fire("ready")
    assert life.mark_idle() and life.idle_since is not None
    assert not life.mark_idle()  # already noted
    life.fire("begin_round")
    assert life.idle_since is None  # leaving idle forgets it
    life.fire("end_round")
    assert life.mark_idle()
    life.mark_busy()
    assert life.idle_since is None


async def test_changed_wakes_on_a_transition(autojump_clock: trio.testing.MockClock) -> None:
    life = Lifecycle(L.IDLE)
    async with trio.open_nursery() as nursery:
        woke = trio.Event()

        async def watch() -> None:
            await life.changed()
            woke.set()

        nursery.start_soon(watch)
        await trio.testing.wait_all_tasks_blocked()
        life.fire("interrupt")
        with trio.fail_after(1):
            await woke.wait()


def test_a_round_writes_the_record_against_the_state_it_finds() -> None:
    """A round that began before a close keeps the agent draining; one that would start
    over a terminal record is refused (issue 9: ``work`` from ``draining`` crashed)."""
    from tinytown.model import Agent, AgentState
    from tinytown.runtime.outcome import round_state

    def agent(state: AgentState) -> Agent:
        return Agent(id="a" * 8, name="ann", nickname="Ann", cli="x", state=state)

    for state in (AgentState.STARTING, AgentState.IDLE, AgentState.WORKING):
        assert round_state(agent(state), "t1").state is AgentState.WORKING
    for state in (AgentState.PAUSED, AgentState.DRAINING):
        written = round_state(agent(state), "t1")
        assert written.state is state and written.current_task == "t1"
    for state in (AgentState.COLD, AgentState.STOPPED, AgentState.ERROR):
        with pytest.raises(InvalidTransitionError):
            round_state(agent(state), "t1")
