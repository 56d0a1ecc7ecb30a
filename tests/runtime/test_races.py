"""Regression tests for the runtime's races (issue 9), each fixed by design.

Every test forces its interleaving (a frozen clock, an injected hook that blocks until
the test lets it go, a reply dropped on the wire), so it fails on the old code every
time, never by timing luck.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from tests.runtime.conftest import eventually
from tinytown import AgentState, TaskState
from tinytown.model import Message, TaskAssign, dumps, loads
from tinytown.model.ids import SUPERVISOR_ID, new_id
from tinytown.runtime import agent_actor
from tinytown.runtime.agent_actor import AgentActor
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town
from tinytown.store import client
from tinytown.store.records import Store
from tinytown.store.scripts import TAKE


async def inflight(town: Town, agent_id: str) -> list[str]:
    return list(await town.redis.execute("LRANGE", town.keys.inflight(agent_id), 0, -1))


async def test_kill_during_crash_backoff_is_not_lost(
    town: Town, monkeypatch: pytest.MonkeyPatch, mock_clock: trio.testing.MockClock
) -> None:
    """The clock is frozen: after its first crash the supervisor waits in its backoff for
    ever, so the kill lands there. The old code lost it (the restart cleared the flag)."""
    crashed = trio.Event()

    def crash(*args: object, **kwargs: object) -> None:
        crashed.set()
        raise RuntimeError("boom")

    monkeypatch.setattr(agent_actor, "check_cli_installed", crash)
    rt = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        handle = await town.spawn_agent("crashy")
        await crashed.wait()
        agent = await handle.kill()  # the old code: no answer in 10 s (TimeoutExpiredError)
        assert agent.state is AgentState.STOPPED
        assert rt.supervisor.live_count() == 0
        nursery.cancel_scope.cancel()


async def test_dispatch_racing_a_kill_leaves_the_task_queued(
    town: Town, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher chose an idle agent; the agent is killed before the assignment is
    written. The old code assigned it to the stopped agent, then raised KeyError."""
    handle = await town.spawn_agent("doomed")
    await handle.wait(idle=True, timeout=20)
    original = town.tasks.assign_existing
    raced: list[str] = []
    attempted = trio.Event()  # the guarded assignment ran (and was refused)

    async def kill_first(task_id: str, agent_id: str, **kwargs: Any) -> Any:
        if raced:
            return await original(task_id, agent_id, **kwargs)
        raced.append(agent_id)
        await handle.kill()
        try:
            return await original(task_id, agent_id, **kwargs)
        finally:
            attempted.set()

    monkeypatch.setattr(town.tasks, "assign_existing", kill_first)
    task = await town.backlog.add("print rescued")
    with trio.fail_after(20):
        await attempted.wait()
    assert (await handle.state()).state is AgentState.STOPPED
    queued = await town.tasks.get(task.id)
    assert queued.state is TaskState.PENDING and queued.assigned_to is None
    assert await town.redis.execute("LLEN", town.keys.inbox(handle.id)) == 0
    # the town goes on: the next idle agent gets it
    other = await town.spawn_agent("next")
    await eventually(lambda: _state_is(town, task.id, TaskState.COMPLETED), timeout=30)
    assert (await town.tasks.get(task.id)).assigned_to == other.id


async def test_close_during_failure_backoff_starts_nothing(
    town: Town, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After three failed rounds the actor backs off; a close arrives then. The old code
    started the next round's task anyway, then crashed on ``work`` from draining, leaving
    the task running and its message in flight for ever."""
    entered, release = trio.Event(), trio.Event()
    original = AgentActor._backoff_after_failures

    async def held_backoff(self: AgentActor) -> None:
        if self.failed_rounds >= 3:
            entered.set()
            await release.wait()
        await original(self)

    monkeypatch.setattr(AgentActor, "_backoff_after_failures", held_backoff)
    handle = await town.spawn_agent("w")
    for _ in range(3):
        await handle.assign("fail 1")
        await handle.wait(idle=True, timeout=20)
    task_id = await handle.assign("print never run")
    await entered.wait()
    agent = await handle.close()
    assert agent.state is AgentState.DRAINING
    release.set()
    final = await handle.wait(timeout=20)
    assert final.state is AgentState.COLD
    task = await town.tasks.get(task_id)
    assert task.state is TaskState.ASSIGNED and task.attempts == 0  # never started
    assert await inflight(town, handle.id) == []
    # its assignment is queued again, for the agent once restarted
    queued = await town.redis.execute("LRANGE", town.keys.inbox(handle.id), 0, -1)
    assert [loads(Message, q).body.task_id for q in queued] == [task_id]  # type: ignore[union-attr]


async def test_a_failing_task_start_is_a_crash_not_a_stale_assignment(
    town: Town, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis refusing the write (OOM) when a round starts its task: the old code took it
    for a stale assignment and dropped it; now the actor restarts and does the task."""
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    original = Store.apply
    refused: list[str] = []

    async def oom_once(store: Store, key: str, **kw: Any) -> Any:
        # The round's first write: the agent record, carrying the task's start (a SET).
        starts = [op[1] for op in kw.get("ops", ()) if op[0] == "SET" and ":task:" in op[1]]
        if starts and key == town.keys.agent(handle.id) and not refused:
            refused.append(starts[0].rsplit(":", 1)[1])
            raise client.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")
        return await original(store, key, **kw)

    monkeypatch.setattr(Store, "apply", oom_once)
    task_id = await handle.assign("print done after all")
    agent = await handle.wait(idle=True, timeout=20)
    assert refused == [task_id]
    task = await town.tasks.get(task_id)
    assert task.state is TaskState.COMPLETED and "done after all" in (task.result or "")
    assert agent.state is AgentState.IDLE and agent.tasks_completed == 1
    kinds = [e.kind for e in await town.messages.recent_events(100)]
    assert "crash" in kinds  # reported, not silent


async def test_a_corrupt_task_record_is_reported_and_skipped(town: Town, runtime: Runtime) -> None:
    """A corrupt record can never be started: reported (event and line), skipped, and the
    agent goes on; unlike a refused write, retrying it would only crash-loop the agent."""
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    bad = new_id()
    await town.redis.execute("SET", town.keys.task(bad), "{not json")
    await town.store.run_ops(
        town.store.deliver_ops(Message.new(SUPERVISOR_ID, handle.id, TaskAssign(bad)))
    )
    good = await handle.assign("print still fine")
    agent = await handle.wait(idle=True, timeout=20)
    assert (await town.tasks.get(good)).state is TaskState.COMPLETED
    assert agent.state is AgentState.IDLE
    events = await town.messages.recent_events(100)
    assert any(e.kind == "malformed" and e.fields.get("task") == bad for e in events)
    assert not any(e.kind == "crash" for e in events)
    assert await inflight(town, handle.id) == []


def lose_reply_once(
    monkeypatch: pytest.MonkeyPatch, wanted: Callable[[bytes], bool]
) -> list[bytes]:
    """The next command whose packed bytes satisfy ``wanted`` runs on the server, but its
    reply is lost on the way back (as when the connection drops at that moment)."""
    lost: list[bytes] = []
    write, read = client.Connection._write, client.Connection._read_one

    async def spying_write(self: client.Connection, payload: bytes) -> None:
        if not lost and wanted(payload):
            lost.append(payload)
            self._lose_next = True  # type: ignore[attr-defined]
        await write(self, payload)

    async def lossy_read(self: client.Connection) -> Any:
        reply = await read(self)
        if getattr(self, "_lose_next", False):
            self._lose_next = False  # type: ignore[attr-defined]
            raise client.RedisUnavailableError("Redis closed the connection.")
        return reply

    monkeypatch.setattr(client.Connection, "_write", spying_write)
    monkeypatch.setattr(client.Connection, "_read_one", lossy_read)
    return lost


async def test_a_take_whose_reply_is_lost_is_recovered_at_once(
    town: Town, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old client ran TAKE again: the first batch stayed in flight, unseen, until the
    next actor start, and ``wait --idle`` never returned."""
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    inbox = town.keys.inbox(handle.id).encode()
    lost = lose_reply_once(monkeypatch, lambda p: TAKE.sha.encode() in p and inbox in p)
    task_id = await handle.assign("print taken once")
    await handle.wait(idle=True, timeout=20)
    assert lost  # the reply really was lost
    assert (await town.tasks.get(task_id)).state is TaskState.COMPLETED
    assert await inflight(town, handle.id) == []


async def test_a_control_claim_whose_reply_is_lost_is_still_answered(
    town: Town, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old runtime's ``LPOP control`` ran again after a lost reply: the request was
    dropped and its requester waited 10 s for nothing."""
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    control = town.keys.control.encode()
    claim = _claim_sha()
    lost = lose_reply_once(
        monkeypatch, lambda p: control in p and (b"LPOP" in p or (claim is not None and claim in p))
    )
    agent = await handle.interrupt()
    assert lost and agent.state is AgentState.PAUSED
    assert (await handle.resume()).state is AgentState.IDLE


def _claim_sha() -> bytes | None:
    try:
        queues = importlib.import_module("tinytown.store.queues")
    except ImportError:
        return None
    return str(queues.CLAIM.sha).encode()


async def test_a_reconnect_recovers_messages_stranded_in_flight(
    town: Town, runtime: Runtime
) -> None:
    """A message in flight that the actor does not know of (a TAKE whose reply was lost
    and then retried, as the old client did) is found as soon as Redis reconnects."""
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    task = await town.backlog.add("print found again", tags=["nobody"])  # not dispatched
    await town.redis.execute(
        "EVAL",
        "redis.call('LREM', KEYS[3], 0, ARGV[2]);"
        " local t = cjson.decode(redis.call('GET', KEYS[2]));"
        " t['state'] = 'assigned'; t['assigned_to'] = ARGV[3];"
        " redis.call('SET', KEYS[2], cjson.encode(t));"
        " return redis.call('RPUSH', KEYS[1], ARGV[1])",
        3,
        town.keys.inflight(handle.id),
        town.keys.task(task.id),
        town.keys.backlog,
        dumps(Message.new(SUPERVISOR_ID, handle.id, TaskAssign(task.id))),
        task.id,
        handle.id,
    )
    await town.redis.execute("CLIENT", "KILL", "TYPE", "pubsub")  # the wake-up connection
    await eventually(lambda: _state_is(town, task.id, TaskState.COMPLETED), timeout=20)
    # The acknowledgement follows the task's completion (the round's last atomic step).
    await eventually(lambda: _nothing_in_flight(town, handle.id), timeout=20)


async def _nothing_in_flight(town: Town, agent_id: str) -> bool:
    return await inflight(town, agent_id) == []


async def test_a_kill_that_cannot_be_recorded_does_not_block_shutdown(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording a kill is shielded from cancellation but has a deadline: an unreachable
    Redis (here: a write that never returns) no longer makes the town unstoppable."""
    from tinytown.runtime import supervisor

    monkeypatch.setattr(supervisor, "CLEANUP_DEADLINE", 0.5)
    rt = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        handle = await town.spawn_agent("w")
        await handle.wait(idle=True, timeout=20)

        async def never(self: AgentActor) -> None:
            await trio.sleep_forever()

        monkeypatch.setattr(AgentActor, "record_kill", never)
        with pytest.raises(Exception, match="not recorded"):
            await handle.kill()
        nursery.cancel_scope.cancel()
    assert (await handle.state()).state is AgentState.IDLE  # said so; recover finds it



async def _state_is(town: Town, task_id: str, state: TaskState) -> bool:
    return (await town.tasks.get(task_id)).state is state
