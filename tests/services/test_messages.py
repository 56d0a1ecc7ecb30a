"""MessageService: sends are checked, bounded, and atomic."""

from __future__ import annotations

import pytest

from tinytown.errors import InvalidInputError, NotFoundError
from tinytown.model import Query, TaskBody, new_id
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
