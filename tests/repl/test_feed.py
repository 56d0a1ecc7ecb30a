"""What the REPL prints about events, and what its toolbar and snapshot show."""

from __future__ import annotations

from tinytown.model import Agent, AgentState, new_id
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.repl.feed import feed_line, is_notable
from tinytown.repl.snapshot import Snapshot, take_snapshot
from tinytown.repl.toolbar import toolbar_text
from tinytown.services.control import LeaseHolder
from tinytown.services.messages import Event
from tinytown.services.town import Town

ALICE = new_id()
NAMES = {ALICE: "alice", SUPERVISOR_ID: "supervisor"}
AT = "2024-05-01T12:03:04Z"


def event(kind: str, **fields: str) -> Event:
    return Event("1-0", {"kind": kind, "at": AT, **fields})


def test_mail_reads_from_the_sender() -> None:
    line = feed_line(
        event("message", agent=SUPERVISOR_ID, sender=ALICE, type="informational", text="done"),
        NAMES,
    )
    assert line.endswith(" [mail] from alice: done")
    query = event("message", agent=SUPERVISOR_ID, sender=ALICE, type="query", text="why?")
    assert feed_line(query, NAMES).endswith(" [mail] query from alice: why?")


def test_other_events_name_the_agent_once() -> None:
    complete = event("complete", agent=ALICE, text="task 1234abcd completed: ok")
    assert feed_line(complete, NAMES).endswith(" [complete] alice: task 1234abcd completed: ok")
    state = event("state", agent=ALICE, state="paused", text="alice: idle -> paused (interrupt)")
    assert feed_line(state, NAMES).endswith(" [state] alice: idle -> paused (interrupt)")
    spawn = event("spawn", agent=ALICE, text="spawned alice (claude)")
    assert feed_line(spawn, NAMES).endswith(" [spawn] spawned alice (claude)")


def test_routine_events_stay_out_of_the_feed() -> None:
    assert is_notable(event("fail", agent=ALICE), running=True)
    assert is_notable(event("state", state="error"), running=True)
    assert not is_notable(event("state", state="working"), running=True)
    assert not is_notable(event("message", agent=ALICE), running=False)


def test_supervisor_mail_is_shown_once() -> None:
    """The message to the supervisor is shown as it is sent, running or not; the
    runtime's ``mail`` event for the same message is not shown again."""
    to_supervisor = event("message", agent=SUPERVISOR_ID, sender=ALICE, text="hi")
    taken = event("mail", agent=SUPERVISOR_ID, sender=ALICE, text="hi")
    for running in (True, False):
        assert is_notable(to_supervisor, running=running)
        assert not is_notable(taken, running=running)


def test_toolbar() -> None:
    agents = tuple(
        Agent(new_id(), f"a{i}", "Helen", "x", state=state)
        for i, state in enumerate([AgentState.IDLE] * 3 + [AgentState.WORKING] * 2)
    )
    holder = LeaseHolder("r", "host", 4242, AT)
    snap = Snapshot(town="proj", agents=agents, runtime=holder, loaded=True)
    assert toolbar_text(snap) == "proj · running (pid 4242) · idle 3 · working 2 · 0 open tasks"
    assert toolbar_text(Snapshot(town="proj", loaded=True)) == (
        "proj · not running · no agents · 0 open tasks"
    )


async def test_snapshot_keeps_unfinished_tasks_only(town: Town) -> None:
    alice = await town.spawn_agent("alice")
    kept = await alice.assign("keep me")
    done = await alice.assign("finish me")
    await town.tasks.complete(done, "ok")
    snap = await take_snapshot(town)
    assert [t.id for t in snap.open_tasks] == [kept]
    assert [a.name for a in snap.agents] == ["alice"]
    assert not snap.running
