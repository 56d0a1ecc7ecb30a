"""tt send (and broadcast), inbox, events (and --follow), history."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import trio

from tests.cli.clihelp import ok, ok_json, parallel, user_error
from tinytown.model import AgentState, Message, MessageType, Priority
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.messages import make_body
from tinytown.services.town import Town


async def test_send_and_inbox(tt, town: Town) -> None:
    alice = await town.agents.spawn("alice")
    bob = await town.agents.spawn("bob")
    assert ok(tt("send", "bob", "Do the thing")).startswith("Sent task to bob (message ")
    ok(tt("send", "bob", "Why?", "--query", "--from", "alice"))
    ok(tt("send", "bob", "FYI", "--info"))
    ok(tt("send", "bob", "approved", "--ack"))
    ok(tt("send", "bob", "Now!", "--urgent"))
    queued, inflight = await town.messages.inbox(bob.id)
    assert [(m.type, m.text, m.sender) for m in queued] == [
        (MessageType.TASK, "Now!", SUPERVISOR_ID),  # urgent: at the head
        (MessageType.TASK, "Do the thing", SUPERVISOR_ID),
        (MessageType.QUERY, "Why?", alice.id),
        (MessageType.INFORMATIONAL, "FYI", SUPERVISOR_ID),
        (MessageType.CONFIRMATION, "approved", SUPERVISOR_ID),
    ]
    assert queued[0].priority is Priority.URGENT and inflight == []

    lines = ok(tt("inbox", "bob")).splitlines()
    assert lines[:2] == ["bob: 5 queued, 0 in flight", " queued:"]
    assert lines[2].startswith("  !") and lines[2].endswith("task            from supervisor: Now!")
    assert lines[4].endswith("query           from alice: Why?")

    ok(tt("send", "supervisor", "All done", "--info", "--from", "bob"))
    data = ok_json(tt("inbox", "--all", "--json"))
    assert list(data) == ["bob", "supervisor"]  # alice has no messages
    assert [m["type"] for m in data["bob"]["queued"]][:2] == ["task", "task"]
    assert data["supervisor"]["queued"][0]["summary"] == "All done"
    assert data["supervisor"]["queued"][0]["from"] == bob.id

    # Broadcast: one message in every live agent's inbox; a note unless --task.
    assert ok(tt("send", "--all", "Stand-up in 5")) == (
        "Broadcast a note to 2 agents (no round of its own: it rides along with each agent's"
        " next round; --task makes it work).\n"
    )
    for agent, count in ((alice, 1), (bob, 6)):
        queued, _ = await town.messages.inbox(agent.id)
        assert len(queued) == count and queued[-1].text == "Stand-up in 5"
        assert queued[-1].type is MessageType.INFORMATIONAL

    # Bad input changes nothing.
    unknown, two_kinds, no_msg, both, huge = parallel(
        partial(tt, "send", "nobody", "hi"),
        partial(tt, "send", "--query", "--info", "bob", "x"),
        partial(tt, "send", "bob"),
        partial(tt, "send", "--all", "bob", "x"),
        partial(tt, "send", "bob", "x" * 70_000),
    )
    assert "No agent named 'nobody'" in user_error(unknown)
    assert "not allowed with argument --query" in user_error(two_kinds, 2)
    assert user_error(no_msg, 2) == "Give TO and MSG (or --all MSG)."
    assert user_error(both, 2) == "Give either TO or --all, not both."
    msg = user_error(huge)
    assert msg.startswith("Message is ") and msg.endswith("the limit is 65536 bytes.")
    assert [len((await town.messages.inbox(a.id))[0]) for a in (alice, bob)] == [1, 6]
    as_json = ok_json(tt("send", "--all", "--task", "Rebase", "--json"))
    assert (as_json["type"], as_json["recipients"]) == ("task", 2)
    for agent in (alice, bob):
        queued, _ = await town.messages.inbox(agent.id)
        assert (queued[-1].type, queued[-1].text) == (MessageType.TASK, "Rebase")


async def test_a_broadcast_note_costs_no_round_and_rides_along(tt, town: Town) -> None:
    """`send --all` without a type is informational: the agent holds it and runs no round
    for it (nobody is replied to); the next actionable message's round carries it."""
    alice = await town.agents.spawn("alice")
    rt = Runtime(town, echo_events=False)

    async def until(check: Callable[[], Awaitable[bool]]) -> None:
        with trio.fail_after(30):
            while not await check():
                await trio.sleep(0.05)

    async def note_held() -> bool:
        queued, inflight = await town.messages.inbox(alice.id)
        return any(m.text == "standup moved to 10:00" for m in queued + inflight)

    async def replies() -> list[Message]:
        return [m for m in (await town.messages.inbox(SUPERVISOR_ID))[0] if m.sender == alice.id]

    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        await until(lambda: _is_idle(town, alice.id))
        sent = await trio.to_thread.run_sync(partial(tt, "send", "--all", "standup moved to 10:00"))
        assert ok(sent).startswith("Broadcast a note to 1 agent (no round of its own")
        await until(note_held)
        (note,) = [m for m in await _held(town, alice.id) if m.text.startswith("standup moved")]
        assert note.type is MessageType.INFORMATIONAL
        work = await trio.to_thread.run_sync(partial(tt, "send", "--all", "--task", "echo-prompt"))
        assert ok(work) == "Broadcast a task to 1 agent (each runs a round for it).\n"

        async def answered() -> bool:
            return len(await replies()) >= 1

        await until(answered)
        nursery.cancel_scope.cancel()
    (reply,) = await replies()  # one reply: to the task, none to the note
    assert "standup moved to 10:00" in reply.text  # it rode along in the task's prompt
    agent = await town.agents.get(alice.id)
    assert agent.rounds_completed == 1  # the note started no round of its own
    assert await _held(town, alice.id) == []  # both acknowledged


async def _held(town: Town, agent_id: str) -> list[Message]:
    queued, inflight = await town.messages.inbox(agent_id)
    return queued + inflight


async def _is_idle(town: Town, agent_id: str) -> bool:
    return (await town.agents.get(agent_id)).state is AgentState.IDLE


async def test_events_and_history(tt, town: Town) -> None:
    await town.agents.spawn("alice")
    bob = await town.agents.spawn("bob")
    task = await town.tasks.assign("alice", "Build the API")
    await town.messages.send("bob", make_body("query", "Ready?"), sender="alice")
    await town.tasks.complete(task.id, "Shipped")

    bob_spawned = (await town.messages.recent_events(10, agent=bob.id))[0].id
    everything, last_two, about_bob, after, history, only_bob = parallel(
        partial(tt, "events"),
        partial(tt, "events", "-n", "2"),
        partial(tt, "events", "--agent", "bob", "--json"),
        partial(tt, "events", "--since", bob_spawned),
        partial(tt, "history"),
        partial(tt, "history", "--agent", bob.id[:8], "-n", "1"),
    )
    lines = ok(everything).splitlines()
    kinds = [line.split()[1] for line in lines]
    assert kinds == ["[spawn]", "[spawn]", "[assign]", "[message]", "[complete]"]
    assert lines[3].split(" ", 1)[1] == "[message] query from alice to bob: Ready?"
    assert lines[4].endswith(f"[complete] alice: task {task.id[:8]} completed: Shipped")

    assert [line.split()[1] for line in ok(last_two).splitlines()] == [
        "[message]", "[complete]"
    ]  # fmt: skip
    events = ok_json(about_bob)
    assert [(e["kind"], e["agent_name"]) for e in events] == [("spawn", "bob"), ("message", "bob")]
    assert events[0]["id"] == bob_spawned
    since = [line.split()[1] for line in ok(after).splitlines()]
    assert since == ["[assign]", "[message]", "[complete]"]

    kinds = [line.split()[1] for line in ok(history).splitlines()]
    assert kinds == ["[assign]", "[message]", "[complete]"]
    assert ok(only_bob).split(" ", 1)[1] == "[message] query from alice to bob: Ready?\n"


async def test_events_follow(tt_env: dict[str, str], town_dir: Path, town: Town) -> None:
    await town.agents.spawn("alice")
    follower = subprocess.Popen(
        [sys.executable, "-m", "tinytown", "events", "--follow", "-n", "1"],
        cwd=town_dir,
        env=tt_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with trio.fail_after(20):
            first = await trio.to_thread.run_sync(follower.stdout.readline)  # type: ignore[union-attr]
            assert first.split(" ", 1)[1] == "[spawn] spawned alice (scripted)\n"
            await town.messages.send("alice", make_body("info", "Hello follower"))
            second = await trio.to_thread.run_sync(follower.stdout.readline)  # type: ignore[union-attr]
        assert second.split(" ", 1)[1] == "[message] from supervisor to alice: Hello follower\n"
        follower.send_signal(signal.SIGINT)
        _, err = await trio.to_thread.run_sync(lambda: follower.communicate(timeout=10))
        assert follower.returncode == 130 and "Traceback" not in err
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


async def test_supervisor_mail_is_printed_once_everywhere(tt, town: Town) -> None:
    """With a runtime, a message to the supervisor makes two events (``message`` as it is
    sent, ``mail`` as the supervisor records it); `tt events` and the runtime's echo print
    it once, in the shared format; --json keeps both events."""
    await town.agents.spawn("alice")
    echoed: list[str] = []
    rt = Runtime(town, echoed.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        sent = await trio.to_thread.run_sync(
            partial(tt, "send", "supervisor", "all tests pass", "--info", "--from", "alice")
        )
        ok(sent)
        with trio.fail_after(20):
            while not any(m.text == "all tests pass" for m in rt.mail):
                await trio.sleep(0.05)  # the supervisor actor recorded it ("mail" event)
            while not any("all tests pass" in line for line in echoed):
                await trio.sleep(0.05)
        text, as_json = await trio.to_thread.run_sync(
            lambda: parallel(partial(tt, "events", "-n", "50"), partial(tt, "events", "--json"))
        )
        nursery.cancel_scope.cancel()
    lines = [line for line in ok(text).splitlines() if "all tests pass" in line]
    assert len(lines) == 1 and lines[0].split(" ", 1)[1] == "[mail] from alice: all tests pass"
    kinds = [e["kind"] for e in ok_json(as_json) if "all tests pass" in e.get("text", "")]
    assert kinds == ["message", "mail"]
    echo = [line for line in echoed if "all tests pass" in line]
    assert len(echo) == 1 and echo[0].endswith(" [mail] from alice: all tests pass")
    spawn = [line for line in echoed if "[spawn]" in line or "[state]" in line]
    assert not any("alice: alice:" in line for line in spawn)
