"""recover and reclaim: dead agents' work is found and moved, never lost."""

from __future__ import annotations

from tinytown import AgentState, TaskState
from tinytown.model import Informational, MessageType, Query, TaskBody
from tinytown.services.recovery import RecoverReport, RecoveryService
from tinytown.services.town import Town


def service(town: Town) -> RecoveryService:
    return town.recovery


async def test_recover_marks_agents_without_a_runtime(town: Town) -> None:
    a = await town.spawn_agent("a")
    dry = await service(town).orphans()
    assert [o.agent.name for o in dry] == ["a"]
    assert (await a.state()).state is AgentState.STARTING  # a dry run changes nothing
    found = await service(town).recover()
    assert [o.agent.id for o in found.agents] == [a.id]
    agent = await a.state()
    assert agent.state is AgentState.STOPPED and "not running" in (agent.state_reason or "")
    assert await service(town).recover() == RecoverReport([], [])  # idempotent


async def test_reclaim_moves_every_message_of_a_dead_agent(town: Town) -> None:
    dead = await town.spawn_agent("dead")
    alive = await town.spawn_agent("alive")
    task = await town.tasks.assign("dead", "print assigned work")
    sent = [
        await town.messages.send("dead", TaskBody("free text work")),
        await town.messages.send("dead", Query("are you there?")),
        await town.messages.send("dead", Informational("fyi"), urgent=True),
    ]
    # one message was taken into flight before the agent died
    await town.redis.execute(
        "LMOVE", town.keys.inbox(dead.id), town.keys.inflight(dead.id), "RIGHT", "RIGHT"
    )
    await town.lifecycle.apply_offline(dead.id, "kill")  # kill requeues its tasks itself
    svc = service(town)
    listed = await svc.reclaimable()
    assert {m.id for _, _, m in listed.messages} >= {m.id for m in sent}
    before = await town.messages.inbox("dead")
    assert sum(map(len, before)) == 4  # listing consumed nothing
    report = await svc.reclaim(to="alive")
    # The kill already requeued the task: its assignment message is spent, not moved.
    assert (report.delivered, report.spent_assignments) == ({"alive": 3}, 1)
    assert (report.requeued_tasks, report.assigned_tasks) == (0, 0)
    assert report.moved_messages == 3
    queued, _inflight = await town.messages.inbox("alive")
    assert {m.id for m in queued} == {m.id for m in sent}
    assert all(m.recipient == alive.id for m in queued)
    assert await town.messages.inbox("dead") == ([], [])
    moved = await town.tasks.get(task.id)
    assert moved.state is TaskState.PENDING  # requeued when killed: the dispatcher's job
    assert any(t.id == task.id for t in await town.backlog.list())


async def test_reclaim_orphan_task_to_backlog(town: Town) -> None:
    agent = await town.spawn_agent("gone")
    task = await town.tasks.assign("gone", "print x")
    # simulate an agent record that vanished (e.g. pruned by another tool)
    await town.redis.execute("DEL", town.keys.agent(agent.id))
    await town.messages.send("supervisor", TaskBody("unrelated"))
    found = await service(town).reclaimable()
    assert [t.id for t in found.tasks] == [task.id]
    report = await service(town).reclaim()
    assert report.requeued_tasks == 1
    assert (await town.tasks.get(task.id)).state is TaskState.PENDING
    _ = MessageType


async def test_reclaim_cli_lists_first_then_moves(town: Town, tt) -> None:  # type: ignore[no-untyped-def]
    await town.spawn_agent("dead")
    await town.spawn_agent("alive")
    await town.messages.send("dead", Query("still there?"))
    assert tt("kill", "dead").returncode == 0
    listing = tt("reclaim")
    assert listing.returncode == 0, listing.stderr
    assert "still there?" in listing.stdout and "--to-backlog" in listing.stdout
    assert len((await town.messages.inbox("dead"))[0]) == 1  # listing moved nothing
    moved = tt("reclaim", "--to", "alive")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout == "Moved 1 message to alive.\n"
    assert [m.text for m in (await town.messages.inbox("alive"))[0]] == ["still there?"]
    bad = tt("reclaim", "--to", "nobody")
    assert bad.returncode == 1 and bad.stderr.startswith("tt: ") and "Traceback" not in bad.stderr
    recover = tt("recover")
    assert recover.returncode == 0 and "alive" in recover.stdout


async def test_prune_removes_the_agent_but_never_its_work(town: Town) -> None:
    dead = await town.spawn_agent("dead")
    task = await town.tasks.assign("dead", "print unfinished")
    question = await town.messages.send("dead", Query("did you see this?"))
    await town.lifecycle.apply_offline(dead.id, "kill")
    removed = await town.lifecycle.prune()
    assert [a.name for a in removed] == ["dead"]
    assert await town.redis.execute("EXISTS", town.keys.agent(dead.id)) == 0
    assert (await town.tasks.get(task.id)).state is TaskState.PENDING
    mail, _ = await town.messages.inbox("supervisor")
    assert question.id in [m.id for m in mail]


async def test_reclaim_says_exactly_what_moved_where(town: Town, tt) -> None:  # type: ignore[no-untyped-def]
    """The task was requeued by the kill: B gets nothing, and the output says so."""
    await town.spawn_agent("a")
    await town.spawn_agent("b")
    task = await town.tasks.assign("a", "print work")
    assert tt("kill", "a").returncode == 0
    assert (await town.tasks.get(task.id)).state is TaskState.PENDING
    moved = tt("reclaim", "--from", "a", "--to", "b")
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout == (
        "Dropped 1 task assignment whose task had already left the agent (requeued when it"
        " was killed, or finished).\n"
    )
    assert await town.messages.inbox("b") == ([], [])
    assert tt("reclaim", "--from", "a", "--to", "b").stdout == "Nothing to move.\n"
    # A task whose agent vanished goes to the new agent; a note to the dead agent too.
    gone = await town.spawn_agent("gone")
    orphan = await town.tasks.assign("gone", "print more")
    await town.redis.execute("DEL", town.keys.agent(gone.id))
    await town.messages.send("a", Informational("fyi"))
    report = await town.recovery.reclaim(to="b")
    assert (report.delivered, report.assigned_tasks, report.spent_assignments) == ({"b": 1}, 1, 0)
    assert (await town.tasks.get(orphan.id)).assigned_to == (await town.agents.resolve("b")).id
