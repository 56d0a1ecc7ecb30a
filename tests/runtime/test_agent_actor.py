"""Agent actors in a running town, through the Python API, with real subprocesses."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.redis_commands import record_commands
from tests.runtime.conftest import alive, eventually, log_pids, proc_state
from tinytown import AgentState, Task, TaskState
from tinytown.model import MessageType, TaskAssign, loads
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.model.message import Message
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town
from tinytown.store.lease import procs_key


async def task_state(town: Town, task_id: str) -> TaskState:
    return (await town.tasks.get(task_id)).state


async def test_assigned_task_completes_with_output(town: Town, runtime: Runtime) -> None:
    handle = await town.spawn_agent("worker-1", role="worker")
    task_id = await handle.assign(Task.new("print hello from the round; env TT_AGENT_NAME"))
    await handle.wait(idle=True, timeout=20)
    task = await town.tasks.get(task_id)
    assert task.state is TaskState.COMPLETED
    assert "hello from the round" in (task.result or "")
    assert "TT_AGENT_NAME=worker-1" in (task.result or "")
    assert task.attempts == 1
    agent = await handle.state()
    assert agent.rounds_completed == 1 and agent.tasks_completed == 1
    assert agent.state is AgentState.IDLE
    log = (town.root / ".tt" / "logs" / "worker-1.log").read_text()
    assert "hello from the round" in log

    # the assigner (the supervisor) was told
    async def told() -> bool:
        mail, inflight = await town.messages.inbox("supervisor")
        return any(
            m.type is MessageType.TASK_DONE and m.body.task_id == task_id  # type: ignore[union-attr]
            for m in mail + inflight
        )

    assert await eventually(told)


async def test_failing_cli_marks_task_failed_with_stderr(town: Town, runtime: Runtime) -> None:
    handle = await town.spawn_agent("w")
    task_id = await handle.assign("stderr something broke; fail 3")
    await handle.wait(idle=True, timeout=20)
    task = await town.tasks.get(task_id)
    assert task.state is TaskState.FAILED
    assert "exit 3" in (task.result or "") and "something broke" in (task.result or "")


async def test_cli_completing_its_own_task_is_respected(town: Town, runtime: Runtime) -> None:
    handle = await town.spawn_agent("w")
    task_id = await handle.assign("complete written by the agent")
    await handle.wait(idle=True, timeout=20)
    task = await town.tasks.get(task_id)
    assert task.state is TaskState.COMPLETED
    assert task.result == "written by the agent"
    # The round's own finish (staged on the record it started) was refused by its guard
    # and not forced: counted once (by the CLI's command), the round's usage added.
    agent = await handle.state()
    assert agent.tasks_completed == 1 and agent.rounds_completed == 1
    assert task.usage.rounds == 1


async def test_a_task_assigned_twice_in_one_round_is_finished_and_counted_once(
    town: Town, runtime: Runtime
) -> None:
    """Two assignments of the same task held by one round (assigned again, or moved away
    and back, before the agent took its mail; tasks_per_round 2): one start, one finish,
    one count, one notice; both messages are done with the round."""
    town.config.data["runtime"]["tasks_per_round"] = 2
    town.config.save()
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    await handle.interrupt()  # both assignments wait in the inbox for one round
    task_id = await handle.assign("print once")
    again = Message.new(SUPERVISOR_ID, handle.id, TaskAssign(task_id))
    await town.store.run_ops(town.store.deliver_ops(again))
    await handle.resume()
    agent = await handle.wait(idle=True, timeout=20)
    assert (await town.tasks.get(task_id)).state is TaskState.COMPLETED
    assert agent.tasks_completed == 1 and agent.rounds_completed == 1
    events = await town.messages.recent_events(200)
    assert [e.kind for e in events if e.fields.get("task") == task_id].count("complete") == 1
    mail, _ = await town.messages.inbox(SUPERVISOR_ID)
    assert [m.type for m in mail if getattr(m.body, "task_id", None) == task_id] == [
        MessageType.TASK_DONE
    ]
    assert await town.redis.execute("LLEN", town.keys.inflight(handle.id)) == 0


async def test_a_round_writes_its_task_only_together_with_the_agent_record(
    town: Town, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task's start rides in the round's first write of the agent record, its finish
    in the settling one (each one atomic step, guarded on the task as read): no separate
    write of the task record by the actor."""
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    sent = record_commands(monkeypatch, town.store)
    task_id = await handle.assign("print hello")
    await handle.wait(idle=True, timeout=20)
    assert (await town.tasks.get(task_id)).state is TaskState.COMPLETED
    task_key, agent_key = town.keys.task(task_id), town.keys.agent(handle.id)
    scripts = [c for c in sent if c[0] == "SCRIPT"]
    assert len([c for c in scripts if c[1] == task_key]) == 1  # the assignment only
    carried = [c for c in scripts if c[1] == agent_key and any(task_key in a for a in c[2:])]
    assert len(carried) == 2  # start + working; finish + settle


async def test_ping_and_status_request_answered_without_a_round(
    town: Town, runtime: Runtime
) -> None:
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    await handle.send(MessageType.PING)
    await handle.send(MessageType.STATUS_REQUEST)

    async def replies() -> list[Message]:
        mail, _ = await town.messages.inbox("supervisor")
        return [m for m in mail if m.type in (MessageType.PONG, MessageType.STATUS_RESPONSE)]

    got = await eventually(lambda: _at_least(replies, 2))
    assert {m.type for m in got} == {MessageType.PONG, MessageType.STATUS_RESPONSE}  # type: ignore[attr-defined]
    assert (await handle.state()).rounds_completed == 0


async def _at_least(fetch, n):  # type: ignore[no-untyped-def]
    items = await fetch()
    return items if len(items) >= n else None


async def test_interrupt_stops_the_child_and_resume_continues(town: Town, runtime: Runtime) -> None:
    handle = await town.spawn_agent("w")
    task_id = await handle.assign("pid; sleep 1.5; print finished")
    pids = await eventually(lambda: _pids(town, "w", "agent-pid"))
    pid = pids[0]  # type: ignore[index]
    agent = await handle.interrupt()
    assert agent.state is AgentState.PAUSED
    await eventually(lambda: _stopped(pid), timeout=20)  # T (D first under I/O load)
    # stopped by the kernel, the child cannot finish: the task is still running
    assert await task_state(town, task_id) is TaskState.RUNNING
    agent = await handle.resume()
    assert agent.state is AgentState.WORKING
    await handle.wait(idle=True, timeout=20)
    task = await town.tasks.get(task_id)
    assert task.state is TaskState.COMPLETED and "finished" in (task.result or "")


async def _pids(town: Town, agent: str, label: str) -> list[int]:
    return log_pids(town, agent, label)


async def test_paused_agent_takes_no_messages(town: Town, runtime: Runtime) -> None:
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    await handle.interrupt()
    takes: list[tuple[str, int]] = []
    runtime.on_take = lambda agent_id, n: takes.append((agent_id, n))
    hub = runtime.context.hub
    token = hub.token(handle.id)
    task_id = await handle.assign("print later")
    # The actor had its chance: the wake-up reached it, and it went back to waiting.
    await hub.wait(handle.id, token)
    await trio.testing.wait_all_tasks_blocked(0.05)
    assert takes == []
    assert await task_state(town, task_id) is TaskState.ASSIGNED
    assert await handle.inbox_len() == 1
    await handle.resume()
    await handle.wait(idle=True, timeout=20)
    assert await task_state(town, task_id) is TaskState.COMPLETED


async def test_kill_terminates_the_process_group_and_requeues(town: Town, runtime: Runtime) -> None:
    handle = await town.spawn_agent("w")
    task_id = await handle.assign("pid; grandchild 60; hang")
    await eventually(lambda: _pids(town, "w", "grandchild-pid"))
    pid = log_pids(town, "w", "agent-pid")[0]
    grandchild = log_pids(town, "w", "grandchild-pid")[0]
    procs = procs_key(town.store)  # the process ledger
    assert await town.redis.execute("HEXISTS", procs, handle.id) == 1  # while it runs
    agent = await handle.kill()
    assert agent.state is AgentState.STOPPED
    await eventually(lambda: _gone(pid, grandchild), timeout=5)
    assert await town.redis.execute("HEXISTS", procs, handle.id) == 0  # reaped: forgotten
    task = await town.tasks.get(task_id)
    assert task.state is TaskState.PENDING and task.assigned_to is None
    assert task_id in [t.id for t in await town.backlog.list()]
    # nothing is lost: the backlog dispatcher hands the task to the next idle agent
    other = await town.spawn_agent("w2")
    await eventually(lambda: _pids(town, "w2", "agent-pid"))
    await other.kill()
    task = await town.tasks.get(task_id)
    assert task.attempts == 2


async def _gone(*pids: int) -> bool:
    return not any(alive(p) for p in pids)


async def test_close_lets_the_round_finish_then_cold(town: Town, runtime: Runtime) -> None:
    handle = await town.spawn_agent("w")
    task_id = await handle.assign("sleep 0.6; print drained")
    await eventually(lambda: _is(town, task_id, TaskState.RUNNING))
    agent = await handle.close()
    assert agent.state is AgentState.DRAINING
    queued = await handle.assign("print never taken")
    final = await handle.wait(timeout=20)
    assert final.state is AgentState.COLD
    assert await task_state(town, task_id) is TaskState.COMPLETED
    assert await task_state(town, queued) is TaskState.ASSIGNED  # kept, not lost


async def _is(town: Town, task_id: str, state: TaskState) -> bool:
    return await task_state(town, task_id) is state


async def test_max_rounds_ends_the_agent_cold(town: Town, runtime: Runtime) -> None:
    handle = await town.spawn_agent("w", max_rounds=1)
    first = await handle.assign("print one")
    final = await handle.wait(timeout=20)
    assert final.state is AgentState.COLD and final.rounds_completed == 1
    assert await task_state(town, first) is TaskState.COMPLETED


async def test_spawn_while_running_starts_at_once(town: Town, runtime: Runtime) -> None:
    handle = await town.spawn_agent("late")
    agent = await handle.wait(idle=True, timeout=10)
    assert agent.state is AgentState.IDLE and agent.started_at


async def test_missing_cli_marks_agent_error_not_a_crash_loop(
    town: Town, runtime: Runtime, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    program = tmp_path / "fake-cli"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    town.config.data["agent_clis"]["gone"] = {"command": str(program)}
    handle = await town.spawn_agent("w", "gone")
    await handle.wait(idle=True, timeout=10)
    await handle.kill()
    # now remove the program and restart the agent: the actor must not loop
    program.unlink()
    await handle.restart()
    agent = await handle.wait(timeout=10)
    assert agent.state is AgentState.ERROR
    assert "not installed" in (agent.state_reason or "")


async def test_forkedcontext_prompt_carries_parent_results(town: Town, runtime: Runtime) -> None:
    parent = await town.spawn_agent("parent")
    await parent.assign("print secret-result-42")
    await parent.wait(idle=True, timeout=20)
    child = await town.spawn_agent("child", parent="parent", mode="forkedcontext")
    task_id = await child.assign("echo-prompt")
    await child.wait(idle=True, timeout=20)
    result = (await town.tasks.get(task_id)).result or ""
    assert "BEGIN PARENT CONTEXT" in result
    assert "secret-result-42" in result


async def test_urgent_messages_are_taken_first(town: Town, runtime: Runtime) -> None:
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    await handle.interrupt()
    await handle.send("print normal-one")
    await handle.send("print urgent-one", urgent=True)
    raws = await town.redis.execute("LRANGE", town.keys.inbox(handle.id), 0, -1)
    assert loads(Message, raws[0]).text == "print urgent-one"
    await handle.resume()
    await handle.wait(idle=True, timeout=20)
    log = (town.root / ".tt" / "logs" / "w.log").read_text()
    assert log.index("urgent-one") < log.index("normal-one")


async def test_notes_held_for_the_next_round_do_not_make_an_agent_busy(
    town: Town, runtime: Runtime
) -> None:
    from tinytown.model import Informational

    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    await town.messages.send("w", Informational("fyi: the build is green"))
    agent = await handle.wait(idle=True, timeout=5)
    assert agent.state is AgentState.IDLE
    # the note waits in flight and is given to the next round's prompt
    task_id = await handle.assign("echo-prompt")
    await handle.wait(idle=True, timeout=20)
    assert "fyi: the build is green" in ((await town.tasks.get(task_id)).result or "")
    assert await town.redis.execute("LLEN", town.keys.inflight(handle.id)) == 0


async def test_more_messages_than_one_take_are_all_handled(town: Town, runtime: Runtime) -> None:
    """Regression: a batch of pings larger than one take must not wait for a new wake-up."""
    from tinytown.model import Ping
    from tinytown.runtime.mailbox import TAKE_BATCH

    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    await handle.interrupt()
    count = TAKE_BATCH * 2 + 20
    ops = []
    for _ in range(count):
        ops += town.store.deliver_ops(
            Message.new("00000000-0000-0000-0000-000000000001", handle.id, Ping()), event=False
        )
    await town.store.run_ops(ops)
    await handle.resume()  # one wake-up for all of them

    async def drained() -> bool:
        return await handle.inbox_len() == 0

    await eventually(drained, timeout=10)


async def _stopped(pid: int) -> bool:
    return proc_state(pid) == "T"


async def test_on_take_reports_every_take(town: Town, runtime: Runtime) -> None:
    """The observation hook the benchmark uses: (agent id, messages taken) per take."""
    takes: list[tuple[str, int]] = []
    runtime.on_take = lambda agent_id, n: takes.append((agent_id, n))
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    await handle.assign("print observed")
    await handle.wait(idle=True, timeout=20)
    assert (handle.id, 1) in takes
    assert sum(n for agent, n in takes if agent == handle.id) == 1  # the assignment, once
