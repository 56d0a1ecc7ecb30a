"""Service operations that read once and write once (what ``tt mcp`` tools cost): each
guarantee broken on purpose by a change injected between the read and the atomic write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio

from tinytown.errors import InvalidTransitionError, NotFoundError
from tinytown.model import Agent, MessageType, TaskState, new_id
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.legacy import LegacyRecordError
from tinytown.services.messages import make_body
from tinytown.services.town import Town
from tinytown.store import lookups
from tinytown.store.records import Store


def before_first_write(
    monkeypatch: pytest.MonkeyPatch, key: str, race: Callable[[], Awaitable[Any]]
) -> list[str]:
    """Run ``race`` once, just before the first atomic write to ``key`` (after the
    operation under test read what it decides on). Returns a list that gets one entry
    per write to ``key`` (the retries show there)."""
    real_apply = Store.apply
    writes: list[str] = []

    async def apply(self: Store, written: str, **kw: Any) -> None:
        if written == key:
            writes.append(written)
            if len(writes) == 1:
                await race()
        await real_apply(self, written, **kw)

    monkeypatch.setattr(Store, "apply", apply)
    return writes


async def test_an_owner_cannot_finish_a_task_reassigned_after_the_read(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    bob = await (await town.spawn_agent("bob")).state()
    task = await town.tasks.assign("ann", "parse")
    key = town.keys.task(task.id)
    real_apply = Store.apply

    async def reassign() -> None:  # the supervisor hands it to bob meanwhile
        monkeypatch.setattr(Store, "apply", real_apply)
        await town.tasks.assign_existing(task.id, bob.id)

    before_first_write(monkeypatch, key, reassign)
    with pytest.raises(InvalidTransitionError, match="not to ann; an agent may only complete"):
        await town.tasks.complete(task.id[:8], "done", sender=ann.id, owner=ann.id)
    after = await town.tasks.get(task.id)
    assert (after.state, after.assigned_to) == (TaskState.ASSIGNED, bob.id)
    assert (await town.agents.get(ann.id)).tasks_completed == 0


async def test_completion_and_its_count_are_one_step(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's record changes between the read and the write (a heartbeat, a round
    ending): the guarded write is refused and decided again, so the count lands on the
    newer record, once, with the completion, and the assigner is told once."""
    ann = await (await town.spawn_agent("ann")).state()
    task = await town.tasks.assign("ann", "build")

    async def round_ends() -> None:
        def change(agent: Agent) -> tuple[Agent, list[list[str]]]:
            return attrs.evolve(agent, rounds_completed=7), []

        await town.store.update(
            Agent, town.keys.agent(ann.id), change, missing=lambda: NotFoundError(ann.id)
        )

    writes = before_first_write(monkeypatch, town.keys.task(task.id), round_ends)
    done = await town.tasks.complete(task.id, "built", sender=ann.id, owner=ann.id)
    assert done.state is TaskState.COMPLETED and len(writes) == 2  # refused once, redone
    agent = await town.agents.get(ann.id)
    assert (agent.tasks_completed, agent.rounds_completed) == (1, 7)  # neither lost
    mail, _ = await town.messages.inbox(SUPERVISOR_ID)
    assert [m.type for m in mail] == [MessageType.TASK_DONE]


async def test_a_completion_by_prefix_without_owner_counts_the_assignee(town: Town) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    task = await town.tasks.assign("ann", "x")
    await town.tasks.complete(task.id[:6], "ok")  # as `tt task complete 1a2b3c` does
    assert (await town.agents.get(ann.id)).tasks_completed == 1
    with pytest.raises(InvalidTransitionError):
        await town.tasks.complete(task.id, "again")
    assert (await town.agents.get(ann.id)).tasks_completed == 1


async def test_of_two_claims_one_wins(town: Town, monkeypatch: pytest.MonkeyPatch) -> None:
    """bob claims the task after ann's claim read it pending: ann's write is refused and
    her claim decided again, which now refuses (it used to hand bob's task to ann)."""
    ann = await (await town.spawn_agent("ann")).state()
    bob = await (await town.spawn_agent("bob")).state()
    task = await town.backlog.add("only one of you")
    real_apply = Store.apply

    async def bob_claims() -> None:
        monkeypatch.setattr(Store, "apply", real_apply)
        await town.backlog.claim(task.id, bob.id, sender=bob.id)

    before_first_write(monkeypatch, town.keys.task(task.id), bob_claims)
    with pytest.raises(InvalidTransitionError, match="assigned, not waiting in the backlog"):
        await town.backlog.claim(task.id[:8], ann.id, sender=ann.id)
    after = await town.tasks.get(task.id)
    assert (after.assigned_to, after.assigned_by) == (bob.id, bob.id)
    assert await town.redis.execute("LLEN", town.keys.inbox(ann.id)) == 0
    assert await town.redis.execute("LLEN", town.keys.inbox(bob.id)) == 1


async def test_a_role_send_reaches_all_or_none(town: Town, monkeypatch: pytest.MonkeyPatch) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    bob = await (await town.spawn_agent("bob", role="tester")).state()
    cy = await (await town.spawn_agent("cy", role="tester")).state()
    body = make_body("task", "test it")
    sent = await town.messages.send_to_role("tester", body, sender=ann.id)
    assert sorted(m.recipient for m in sent) == sorted([bob.id, cy.id])
    assert len({m.id for m in sent}) == 2  # each its own message, as `tt send` makes it
    await town.lifecycle.kill("cy")  # only bob is a live tester now
    with pytest.raises(NotFoundError, match="other than the sender has role 'tester'"):
        await town.messages.send_to_role("tester", body, sender=bob.id)

    async def prune_bob() -> None:
        await town.redis.execute("DEL", town.keys.agent(bob.id))

    before_first_write(monkeypatch, town.keys.meta, prune_bob)
    bob_before = await town.redis.execute("LLEN", town.keys.inbox(bob.id))
    with pytest.raises(NotFoundError, match=f"Agent {bob.id} was removed meanwhile"):
        await town.messages.send_to_role("tester", body, sender=ann.id)
    assert await town.redis.execute("LLEN", town.keys.inbox(bob.id)) == bob_before


async def test_a_send_signed_by_a_gone_agent_is_refused_in_its_script(town: Town) -> None:
    bob = await (await town.spawn_agent("bob")).state()
    ghost = new_id()
    with pytest.raises(NotFoundError, match=f"No agent with id {ghost} \\(the sender\\)"):
        await town.messages.send(bob.id, make_body("info", "boo"), sender=ghost)
    with pytest.raises(NotFoundError, match="the sender"):
        await town.messages.broadcast(make_body("info", "boo"), sender=ghost)
    assert await town.redis.execute("LLEN", town.keys.inbox(bob.id)) == 0
    ann = await (await town.spawn_agent("ann")).state()
    await town.messages.send(bob.id, make_body("info", "hi"), sender=ann.id.upper())
    queued, _ = await town.messages.inbox(bob.id)
    assert [(m.sender, m.text) for m in queued] == [(ann.id, "hi")]


async def test_a_rust_hash_task_is_refused_not_crashed_on(town: Town) -> None:
    task_id = new_id()
    await town.redis.execute("HSET", town.keys.task(task_id), "state", "assigned")
    await town.redis.execute("ZADD", town.keys.tasks, "1", task_id)
    with pytest.raises(LegacyRecordError, match="Rust Tinytown record"):
        await town.tasks.complete(task_id[:8], "x")
    assert await town.redis.execute("HGET", town.keys.task(task_id), "state") == "assigned"


async def test_the_lookup_reports_what_a_prefix_matched(town: Town) -> None:
    tasks = [await town.backlog.add(f"t{i}") for i in range(20)]
    read = await lookups.task_and_agent(town.store, "", full=False)  # matches every task
    assert sorted(read.matches) == sorted(t.id for t in tasks) and read.task_raw is None
    missing = await lookups.task_and_agent(town.store, new_id(), full=True)
    assert missing.task_raw is None and len(missing.matches) == 1
    agents, task_raws = await lookups.record_sets(town.store, agents=False, tasks=True)
    assert agents == [] and len(task_raws) == 20


async def test_a_finish_cancelled_between_its_read_and_write_changes_nothing(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = await (await town.spawn_agent("ann")).state()
    task = await town.tasks.assign("ann", "slow")
    with trio.CancelScope() as scope:

        async def cancel() -> None:
            scope.cancel()
            await trio.lowlevel.checkpoint()

        before_first_write(monkeypatch, town.keys.task(task.id), cancel)
        await town.tasks.complete(task.id, "done", sender=ann.id, owner=ann.id)
    assert scope.cancelled_caught
    assert (await town.tasks.get(task.id)).state is TaskState.ASSIGNED
    assert (await town.agents.get(ann.id)).tasks_completed == 0
    assert (await town.messages.inbox(SUPERVISOR_ID))[0] == []
