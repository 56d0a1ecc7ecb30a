"""The flat script: guards then ops, atomically, arguments passed as they are (no JSON)."""

from __future__ import annotations

import pytest

from tests.redis_commands import record_commands
from tinytown.model import SUPERVISOR_ID, Ping, dumps
from tinytown.services.town import Town
from tinytown.store.flat import flat_args, run_flat
from tinytown.store.records import GuardFailed


async def test_ops_run_in_order_and_arguments_arrive_unchanged(town: Town) -> None:
    key = f"{town.keys.town}:flat:list"
    odd = ['quote " and \\ backslash', "multi\nline", "ünïcödé ✓", "", "x" * 5000, "[1]"]
    await run_flat(town.store, [["RPUSH", key, *odd], ["LPUSH", key, "head"]])
    assert await town.redis.execute("LRANGE", key, 0, -1) == ["head", *odd]


async def test_a_failed_guard_runs_nothing_and_names_the_guard(town: Town) -> None:
    key = f"{town.keys.town}:flat:guarded"
    present = f"{town.keys.town}:flat:present"
    await town.redis.execute("SET", present, "1")
    guards = [(["EXISTS", present], 1), (["EXISTS", f"{town.keys.town}:flat:absent"], 1)]
    with pytest.raises(GuardFailed) as failed:
        await run_flat(town.store, [["RPUSH", key, "a"]], guards)
    assert failed.value.index == 1
    assert await town.redis.execute("EXISTS", key) == 0
    await run_flat(town.store, [["RPUSH", key, "a"]], guards[:1])  # guards that hold
    assert await town.redis.execute("LRANGE", key, 0, -1) == ["a"]


async def test_an_error_inside_the_script_is_raised(town: Town) -> None:
    key = f"{town.keys.town}:flat:string"
    await town.redis.execute("SET", key, "v")
    with pytest.raises(Exception, match="WRONGTYPE"):
        await run_flat(town.store, [["RPUSH", key, "a"]])


def test_arguments_are_length_prefixed() -> None:
    args = flat_args([["RPUSH", "k", "v"], ["PUBLISH", "c", "m"]], [(["EXISTS", "a"], 1)])
    assert args == [1, 2, "EXISTS", "a", "1", 3, "RPUSH", "k", "v", 3, "PUBLISH", "c", "m"]


async def test_a_send_by_id_is_one_flat_script_call(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The point of the flat script: a send is one round trip and carries its message as
    it is (no JSON op list around it)."""
    handle = await town.spawn_agent("w")
    sent = record_commands(monkeypatch, town.store)
    message = await town.messages.send(handle.id, Ping())
    assert len(sent) == 1 and sent[0][0] == "SCRIPT"
    assert dumps(message) in sent[0]  # the payload as one argument, serialised once
    raws = await town.redis.execute("LRANGE", town.keys.inbox(handle.id), 0, -1)
    assert raws == [dumps(message)]
    event = (await town.messages.recent_events(1))[-1]
    assert event.kind == "message" and event.fields["message_id"] == message.id


async def test_a_send_to_a_removed_agent_changes_nothing(town: Town) -> None:
    from tinytown.errors import NotFoundError
    from tinytown.model.ids import new_id

    gone = new_id()
    before = await town.redis.execute("XLEN", town.keys.events)
    with pytest.raises(NotFoundError):
        await town.messages.send(gone, Ping())
    with pytest.raises(NotFoundError):  # an unknown sender id: refused the same way
        await town.messages.send(SUPERVISOR_ID, Ping(), sender=new_id())
    assert await town.redis.execute("EXISTS", town.keys.inbox(gone)) == 0
    assert await town.redis.execute("XLEN", town.keys.events) == before
