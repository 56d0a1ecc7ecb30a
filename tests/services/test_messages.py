"""MessageService: sends are checked, bounded, and atomic."""

from __future__ import annotations

import pytest
import trio

from tinytown.errors import AmbiguousReferenceError, InvalidInputError, NotFoundError
from tinytown.model import Informational, Message, Query, TaskBody, dumps, new_id
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.model.message import MAX_MESSAGE_BYTES
from tinytown.services.messages import Event
from tinytown.services.town import Town


async def test_send_by_id_checks_the_agent_in_the_same_step(town: Town) -> None:
    handle = await town.spawn_agent("a")
    sent = await town.messages.send(handle.id, Query("there?"))
    queued, _ = await town.messages.inbox(handle.id)
    assert [m.id for m in queued] == [sent.id]
    ghost = new_id()
    with pytest.raises(NotFoundError):
        await town.messages.send(ghost, TaskBody("lost?"))
    assert await town.redis.execute("EXISTS", town.keys.inbox(ghost)) == 0


async def test_oversized_messages_are_refused(town: Town) -> None:
    await town.spawn_agent("a")
    with pytest.raises(InvalidInputError):
        await town.messages.send("a", TaskBody("x" * 70_000))
    assert await town.agents.inbox_len((await town.agents.resolve("a")).id) == 0


async def test_a_message_is_stored_as_encoded_once(town: Town) -> None:
    handle = await town.spawn_agent("a")
    text = 'quotes " and backslashes \\ and ✓ ' * 20
    sent = await town.messages.send(handle.id, TaskBody(text))
    raws = await town.store.read_lists([town.keys.inbox(handle.id)])
    assert raws == [[dumps(sent)]]  # the exact JSON of the message, not re-escaped


async def test_size_limit_counts_bytes_not_characters(town: Town) -> None:
    await town.spawn_agent("a")
    # Under the limit in characters, over it in UTF-8 bytes.
    text = "✓" * (MAX_MESSAGE_BYTES // 3 + 10)
    assert len(text) < MAX_MESSAGE_BYTES < len(text.encode())
    with pytest.raises(InvalidInputError, match="bytes"):
        await town.messages.send("a", TaskBody(text))
    assert await town.agents.inbox_len((await town.agents.resolve("a")).id) == 0


async def _clients(town: Town) -> dict[int, dict[str, str]]:
    out = {}
    for line in (await town.store.redis.execute("CLIENT", "LIST", "TYPE", "normal")).splitlines():
        fields = dict(p.split("=", 1) for p in line.split() if "=" in p)
        out[int(fields["id"])] = fields
    return out


async def test_follow_events_of_a_one_shot_town_survives_a_dropped_connection(
    town: Town,
) -> None:
    """`tt events --follow` is one-shot (no reconnect for its commands), yet its follower
    reconnects and resumes after the last event it yielded."""
    assert town.store.reconnect is False
    before = set(await _clients(town))
    seen: list[Event] = []
    changed = trio.Event()

    async def follow() -> None:
        nonlocal changed
        async for event in town.messages.follow_events(agent="a1"):
            seen.append(event)
            changed.set()

    async def until(count: int) -> list[str]:
        nonlocal changed
        with trio.fail_after(20):
            while len(seen) < count:
                changed = trio.Event()
                await changed.wait()
        return [e.text for e in seen]

    events = town.keys.events
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        with trio.fail_after(10):
            while True:
                mine = [
                    i
                    for i, f in (await _clients(town)).items()
                    if i not in before and f.get("cmd") == "xread" and "b" in f.get("flags", "")
                ]
                if mine:
                    break
                await trio.sleep(0.005)
        await town.store.redis.execute("XADD", events, "*", "agent", "a1", "text", "one")
        await town.store.redis.execute("XADD", events, "*", "agent", "a2", "text", "other")
        assert await until(1) == ["one"]
        # Added and dropped in one step: only a follower resuming from "one" yields "two".
        await town.store.redis.pipeline(
            [
                ["MULTI"],
                ["XADD", events, "*", "agent", "a1", "text", "two"],
                ["CLIENT", "KILL", "ID", mine[0]],
                ["EXEC"],
            ]
        )
        await town.store.redis.execute("XADD", events, "*", "agent", "a1", "text", "three")
        assert await until(3) == ["one", "two", "three"]
        nursery.cancel_scope.cancel()


async def test_text_that_is_not_utf8_is_refused_before_anything_is_sent(town: Town) -> None:
    """API callers get the same clean refusal as the command line: one InvalidInputError,
    nothing delivered (a surrogate-escaped byte would otherwise fail inside the client)."""
    handle = await town.spawn_agent("utf", "scripted")
    with pytest.raises(InvalidInputError, match="not valid UTF-8 text"):
        await town.messages.send(handle.id, Informational("bad \udcff byte"))
    with pytest.raises(InvalidInputError, match="not valid UTF-8 text"):
        await town.messages.broadcast(Informational("bad \udcff byte"))
    assert await handle.inbox_len() == 0


# -- questions and replies -------------------------------------------------------------


async def test_reply_is_correlated_delivered_and_marks_the_question_answered(
    town: Town,
) -> None:
    asker = await town.spawn_agent("asker")
    question = await town.messages.send("supervisor", Query("which db?"), sender="asker")
    other = await town.messages.send("supervisor", Informational("fyi"), sender="asker")
    assert [m.id for m in await town.messages.questions_waiting()] == [question.id]
    reply = await town.messages.reply(question.id[:6], "postgres")
    assert (reply.recipient, reply.sender) == (asker.id, SUPERVISOR_ID)
    assert reply.correlation_id == question.id
    assert isinstance(reply.body, Informational) and reply.text == "postgres"
    queued, _ = await town.messages.inbox("asker")
    assert [(m.id, m.correlation_id) for m in queued] == [(reply.id, question.id)]
    assert await town.messages.questions_waiting() == []
    assert [m.id for m in await town.messages.questions()] == [question.id]
    # A correlated send (API) answers a question too.
    second = await town.messages.send("supervisor", Query("which port?"), sender="asker")
    assert [m.id for m in await town.messages.questions_waiting()] == [second.id]
    await town.messages.send(asker.id, Informational("5432"), correlation_id=second.id)
    assert await town.messages.questions_waiting() == []
    # Any message the supervisor received can be answered; the asker is who sent it.
    again = await town.messages.reply(other.id, "ok", sender="asker")
    assert (again.sender, again.recipient) == (asker.id, asker.id)


async def test_reply_refusals_change_nothing(town: Town) -> None:
    asker = await town.spawn_agent("asker")
    question = await town.messages.send("supervisor", Query("which db?"), sender="asker")
    mine = await town.messages.send("supervisor", Query("note to self"))
    for bad, error in (
        ("ab", InvalidInputError),  # too short
        ("zzzz", InvalidInputError),  # not hex
        ("ffffffff-ffff", NotFoundError),
        (mine.id, InvalidInputError),  # the supervisor asked itself: nobody to answer
    ):
        with pytest.raises(error):
            await town.messages.reply(bad, "answer")
    with pytest.raises(InvalidInputError):
        await town.messages.reply(question.id, "  ")
    # Two questions sharing a prefix are ambiguous until the prefix is long enough.
    twins = [
        Message(f"abcd{n}000-0000-4000-8000-000000000000", asker.id, SUPERVISOR_ID, Query("?"))
        for n in (1, 2)
    ]
    await town.store.run_ops(
        [["RPUSH", town.keys.inbox(SUPERVISOR_ID), dumps(m)] for m in twins]
    )
    with pytest.raises(AmbiguousReferenceError, match="abcd1000, abcd2000"):
        await town.messages.reply("abcd", "which one?")
    assert (await town.messages.reply("abcd2", "this one")).correlation_id == twins[1].id
    await town.store.run_ops([["DEL", town.keys.inbox(asker.id)]])
    queued, _ = await town.messages.inbox(asker.id)
    assert queued == []
    # The asker is gone: refused, and the question still waits.
    await town.store.run_ops([["DEL", town.keys.agent(asker.id)]])
    with pytest.raises(NotFoundError, match="no longer exists"):
        await town.messages.reply(question.id, "too late")
    assert question.id in [m.id for m in await town.messages.questions_waiting()]
