"""Rounds of real-looking agent CLIs (the fake claude/codex in actors/, on PATH or behind
tests/runtime/clis/flaky.py): structured results, sessions, usage, budgets, rate limits,
setup failures, attempts, tasks per round, the town-wide cap on rounds, early stops."""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from tests.conftest import StartRuntime
from tests.runtime.conftest import eventually
from tinytown import AgentState, TaskState
from tinytown.model import Agent, Budget, Informational, Usage
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.handle import AgentHandle
from tinytown.services.town import Town
from tinytown.store.usage import town_usage

pytestmark = pytest.mark.usefixtures("fake_clis")

CLIS = Path(__file__).resolve().parent / "clis"
FLAKY = CLIS / "flaky.py"
CLAUDE_ARGS = "--print --output-format json --dangerously-skip-permissions"


@pytest.fixture
def plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The flaky CLIs' plan file (one step per run: ``ok``, ``ratelimit 30``, ...)."""
    path = tmp_path / "plan"
    path.write_text("")
    monkeypatch.setenv("FLAKY_PLAN", str(path))
    monkeypatch.setenv("FLAKY_RUNS", str(tmp_path / "runs"))
    return path


def flaky(town: Town, name: str, cli: str, args: str, fmt: str) -> None:
    """A preset ``name`` running the fake ``cli`` behind the flaky wrapper."""
    town.config.data.setdefault("agent_clis", {})[name] = {
        "command": f"{sys.executable} {FLAKY} {cli} {args}",
        "format": fmt,
    }
    town.config.save()


async def task_done(
    town: Town, task_id: str, state: TaskState = TaskState.COMPLETED, step: float = 0.02
) -> None:
    """Wait for the task's state (``step``: seconds between looks; under a mock clock,
    a larger one lets virtual time run ahead)."""

    async def check() -> bool:
        return (await town.tasks.get(task_id)).state is state

    await eventually(check, timeout=120, step=step)


async def agent_state(handle: AgentHandle, state: AgentState) -> None:
    async def check() -> bool:
        return (await handle.state()).state is state

    await eventually(check, timeout=30)


# -- structured results, usage, sessions ------------------------------------------------


async def test_structured_result_is_the_answer_and_usage_is_recorded_everywhere(
    town: Town, start_runtime: StartRuntime
) -> None:
    await start_runtime()
    handle = await town.spawn_agent("c", "claude")
    task_id = await handle.assign("print the answer is 42; cost 0.25; tokens 1000 200 50")
    await task_done(town, task_id)
    await handle.wait(idle=True, timeout=30)  # the round's record follows the task's
    task = await town.tasks.get(task_id)
    assert task.result is not None and "the answer is 42" in task.result
    assert not task.result.lstrip().startswith("{")  # the answer, not the raw JSON
    expected = Usage(1000, 200, 50, 0.25, 1, task.usage.duration)
    assert task.usage == expected and task.usage.duration > 0
    agent = await handle.state()
    assert agent.usage == expected
    assert agent.session_id  # claude's session id, recorded
    total = await town_usage(town.store)
    assert (total.input_tokens, total.output_tokens, total.cost_usd, total.rounds) == (
        1000,
        200,
        0.25,
        1,
    )
    events = await town.messages.recent_events(50, agent=handle.id)
    rounds = [e for e in events if e.kind == "round"]
    assert len(rounds) == 1
    assert rounds[0].fields["outcome"] == "ok" and rounds[0].fields["cost_usd"] == "0.25"
    assert rounds[0].fields["input_tokens"] == "1000"


async def test_resumed_mode_continues_the_session_fresh_mode_does_not(
    town: Town, start_runtime: StartRuntime
) -> None:
    await start_runtime()
    resumed = await town.spawn_agent("r", "claude", mode="resumed")
    fresh = await town.spawn_agent("f", "claude")
    results = {}
    for handle in (resumed, fresh):
        first = await handle.assign("session")
        await task_done(town, first)
        second = await handle.assign("session")
        await task_done(town, second)
        await handle.wait(idle=True, timeout=30)
        results[handle.id] = [(await town.tasks.get(t)).result or "" for t in (first, second)]
    one, two = results[resumed.id]
    session = (await resumed.state()).session_id
    assert session and f"session {session}" in one and "resumed" not in one
    assert f"session {session} resumed" in two  # the fake says it continued that session
    one, two = results[fresh.id]
    assert "resumed" not in one and "resumed" not in two
    assert one.split()[1] != two.split()[1]  # a new session each round


# -- budgets ------------------------------------------------------------------------------


async def test_budget_pauses_the_agent_until_raised_and_resumed(
    town: Town, start_runtime: StartRuntime
) -> None:
    await start_runtime()
    handle = await town.spawn_agent("b", "claude", budget=Budget(usd=1.0))
    first = await handle.assign("print one; cost 0.6")
    await task_done(town, first)
    await handle.wait(idle=True, timeout=30)
    assert (await handle.state()).state is not AgentState.PAUSED
    second = await handle.assign("print two; cost 0.6")
    await task_done(town, second)  # the round that reaches the limit finishes
    await agent_state(handle, AgentState.PAUSED)
    agent = await handle.state()
    assert agent.state_reason == "budget: agent limit $1.20 of $1.00"
    third = await handle.assign("print three; cost 0.6")
    mail, _ = await town.messages.inbox("supervisor")
    told = [m for m in mail if m.sender == handle.id and "budget" in m.text]
    assert told and "tt resume b" in told[0].text
    events = await town.messages.recent_events(50, agent=handle.id)
    assert any(e.kind == "budget" for e in events)
    # Paused: nothing more is spent. Resumed without raising it: paused again, not run.
    await handle.resume()
    await agent_state(handle, AgentState.PAUSED)
    assert (await town.tasks.get(third)).state is TaskState.ASSIGNED
    assert (await handle.state()).usage.rounds == 2
    # Raised (the town's per-agent limit is not set; the agent's own one is): runs again.
    await town.store.update(
        Agent,
        town.keys.agent(handle.id),
        lambda a: (attrs.evolve(a, budget=Budget(usd=5.0)), []),
        missing=lambda: AssertionError("gone"),
    )
    await handle.resume()
    await task_done(town, third)
    assert (await town.tasks.get(third)).attempts == 1


async def test_a_budget_set_by_another_process_stops_the_next_round_before_its_cli(
    town: Town, start_runtime: StartRuntime
) -> None:
    """The runtime goes straight to its writes with the agent record it last saw; a
    budget set meanwhile by another process (whose write it has not seen) must still
    stop the next round before the CLI runs, with the attempt given back."""
    await start_runtime()
    handle = await town.spawn_agent("b", "claude")
    first = await handle.assign("print one; cost 0.6")
    await task_done(town, first)
    await handle.wait(idle=True, timeout=30)
    # Another process (`tt budget set b`, then `tt assign b`): the runtime (which shares
    # ``town`` with this test) sees neither write before its round.
    async with await Town.connect(town.root) as other:
        await other.set_budget("b", usd=0.5)
        second = await (await other.agent("b")).assign("print two; cost 0.6")
        await agent_state(await other.agent("b"), AgentState.PAUSED)
    agent = await handle.state()
    assert agent.state_reason == "budget: agent limit $0.60 of $0.50"
    assert agent.usage.rounds == 1  # the second round's CLI never ran
    task = await town.tasks.get(second)
    assert task.state is TaskState.ASSIGNED and task.attempts == 0


async def test_a_budget_raised_by_another_process_does_not_pause_the_agent(
    town: Town, start_runtime: StartRuntime
) -> None:
    """The gate before a round reads the agent record the runtime last saw; a limit it
    finds reached there is checked again on a fresh read, so a budget raised meanwhile
    by another process (unseen by the runtime) does not pause the agent."""
    await start_runtime()
    handle = await town.spawn_agent("b", "claude")
    first = await handle.assign("print one; cost 0.6")
    await task_done(town, first)
    await handle.wait(idle=True, timeout=30)
    await town.set_budget("b", usd=0.5)  # through the runtime's own store: it knows this
    async with await Town.connect(town.root) as other:
        await other.set_budget("b", usd=5.0)  # raised elsewhere: the runtime has not seen it
        second = await (await other.agent("b")).assign("print two; cost 0.1")
        await task_done(other, second)
        agent = await (await other.agent("b")).state()
    assert agent.state is not AgentState.PAUSED
    assert agent.usage.rounds == 2


async def test_town_budget_stops_every_agent(town: Town, start_runtime: StartRuntime) -> None:
    town.config.set("budget.town_usd", "0.5")
    await start_runtime()
    a = await town.spawn_agent("a", "claude")
    b = await town.spawn_agent("b", "claude")
    first = await a.assign("print spend; cost 0.5")
    await task_done(town, first)
    await agent_state(a, AgentState.PAUSED)
    waiting = await b.assign("print never; cost 0.1")
    await agent_state(b, AgentState.PAUSED)  # paused before its round started
    assert (await b.state()).state_reason == "budget: town limit $0.50 of $0.50"
    assert (await town.tasks.get(waiting)).state is TaskState.ASSIGNED
    assert (await town.tasks.get(waiting)).attempts == 0
    assert (await town_usage(town.store)).rounds == 1


# -- rate limits, setup failures, attempts ------------------------------------------------


async def test_rate_limit_holds_the_cli_town_wide_and_no_task_fails(
    town: Town, start_runtime: StartRuntime, plan: Path, io_clock: trio.testing.MockClock
) -> None:
    """The issue's scenario: five tasks queued for one agent, the CLI says the usage
    limit resets in 12 s: nothing fails, nothing of that CLI runs until then, and the
    first task is done on its second attempt."""
    flaky(town, "fclaude", "claude", CLAUDE_ARGS, "claude-json")
    plan.write_text("ratelimit 12\n")
    await start_runtime()
    worker = await town.spawn_agent("w", "fclaude")
    other = await town.spawn_agent("o", "fclaude")
    await agent_state(other, AgentState.IDLE)
    await worker.interrupt()  # queue all five before the first round
    ids = [await worker.assign(f"print task {i}") for i in range(5)]
    await worker.resume()

    async def held() -> bool:
        reason = (await worker.state()).state_reason or ""
        return reason.startswith("rate limit: fclaude until ")

    await eventually(held, timeout=30)
    # Dispatch for that CLI waits too: the idle agent of the same CLI gets no backlog work.
    backlog = await town.backlog.add("print from the backlog")
    await trio.sleep(5)  # virtual time, well inside the 12 s hold
    assert (await town.tasks.get(backlog.id)).state is TaskState.PENDING
    assert (await town.tasks.get(ids[0])).state is TaskState.ASSIGNED
    events = await town.messages.recent_events(100)
    assert any(e.kind == "rate_limit" and e.fields.get("cli") == "fclaude" for e in events)
    for task_id in [*ids, backlog.id]:
        await task_done(town, task_id, step=1.0)
    await worker.wait(idle=True, timeout=120)
    tasks = [await town.tasks.get(t) for t in ids]
    assert [t.attempts for t in tasks] == [2, 1, 1, 1, 1]
    assert all(t.state is TaskState.COMPLETED for t in tasks)
    assert (await worker.state()).rounds_completed == 6  # one per task, plus the refused one


async def test_setup_failure_pauses_with_the_cli_message_and_resume_continues(
    town: Town, start_runtime: StartRuntime, plan: Path
) -> None:
    flaky(town, "fclaude", "claude", CLAUDE_ARGS, "claude-json")
    plan.write_text("notloggedin\n")
    await start_runtime()
    handle = await town.spawn_agent("s", "fclaude")
    task_id = await handle.assign("print after login")
    await agent_state(handle, AgentState.PAUSED)
    agent = await handle.state()
    assert agent.state_reason is not None and agent.state_reason.startswith("setup: ")
    assert "Not logged in" in agent.state_reason
    task = await town.tasks.get(task_id)
    assert task.state is TaskState.ASSIGNED and task.attempts == 0  # not the task's fault
    mail, _ = await town.messages.inbox("supervisor")
    assert any("not set up" in m.text and "tt resume s" in m.text for m in mail)
    assert any(e.kind == "setup" for e in await town.messages.recent_events(50))
    await handle.resume()  # "fixed": the plan has no more failures
    await task_done(town, task_id)
    task = await town.tasks.get(task_id)
    assert task.attempts == 1 and "after login" in (task.result or "")


async def test_a_real_failure_fails_the_task_only_on_its_last_attempt(
    town: Town, runtime: Runtime
) -> None:
    handle = await town.spawn_agent("w")  # the scripted CLI (plain text)
    task_id = await handle.assign("stderr broken; fail 2")
    await task_done(town, task_id, TaskState.FAILED)
    await handle.wait(idle=True, timeout=30)
    task = await town.tasks.get(task_id)
    assert task.attempts == 3 and "exit 2" in (task.result or "")
    assert (await handle.state()).rounds_completed == 3
    once = await town.tasks.assign("w", "fail 2", max_attempts=1)
    await task_done(town, once.id, TaskState.FAILED)
    assert (await town.tasks.get(once.id)).attempts == 1


# -- tasks per round, the cap on rounds, early stops --------------------------------------


@pytest.mark.parametrize(("per_round", "rounds"), [(1, 3), (2, 2)])
async def test_tasks_per_round(
    town: Town, start_runtime: StartRuntime, per_round: int, rounds: int
) -> None:
    town.config.set("runtime.tasks_per_round", str(per_round))
    await start_runtime()
    handle = await town.spawn_agent("w")
    await agent_state(handle, AgentState.IDLE)
    await handle.interrupt()
    await handle.send(Informational("a note for the next round"))
    ids = [await handle.assign(f"print t{i}; echo-prompt") for i in range(3)]
    await handle.resume()
    for task_id in ids:
        await task_done(town, task_id)
        await handle.wait(idle=True, timeout=30)  # its last round is recorded
    assert (await handle.state()).rounds_completed == rounds
    first = (await town.tasks.get(ids[0])).result or ""
    assert "a note for the next round" in first and "from supervisor" in first
    assert "00000000" not in first
    mail, _ = await town.messages.inbox("supervisor")
    assert not any(m.correlation_id and "a note" in m.text for m in mail)  # never answered


async def test_max_parallel_rounds_caps_cli_processes_town_wide(
    town: Town, start_runtime: StartRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks, log, go = tmp_path / "marks", tmp_path / "probe.log", tmp_path / "go"
    marks.mkdir()
    for name, value in (("PROBE_DIR", marks), ("PROBE_LOG", log), ("PROBE_GO", go)):
        monkeypatch.setenv(name, str(value))
    town.config.set("agent_clis.probe", f"/bin/sh {CLIS / 'slot_probe.sh'}")
    town.config.set("runtime.max_parallel_rounds", "2")
    rt = await start_runtime()
    handles = [await town.spawn_agent(f"p{i}", "probe") for i in range(20)]
    ids = [await h.assign("probe") for h in handles]

    async def two_running_and_others_waiting() -> bool:
        reasons = [(await h.state()).state_reason for h in handles]
        return len(list(marks.iterdir())) == 2 and "waiting for a slot" in reasons

    await eventually(two_running_and_others_waiting, timeout=30)
    go.touch()
    for task_id in ids:
        await task_done(town, task_id)
    counts = [int(n) for n in log.read_text().split()]
    assert len(counts) == 20 and max(counts) == 2
    assert rt.context.slots.peak == 2


async def test_waiting_for_a_slot_ends_at_once_on_interrupt_close_and_kill(
    town: Town, start_runtime: StartRuntime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks, go = tmp_path / "marks", tmp_path / "go"
    marks.mkdir()
    monkeypatch.setenv("PROBE_DIR", str(marks))
    monkeypatch.setenv("PROBE_LOG", str(tmp_path / "probe.log"))
    monkeypatch.setenv("PROBE_GO", str(go))
    town.config.set("agent_clis.probe", f"/bin/sh {CLIS / 'slot_probe.sh'}")
    town.config.set("runtime.max_parallel_rounds", "1")
    rt = await start_runtime()
    busy = await town.spawn_agent("busy", "probe")
    await busy.assign("probe")
    await eventually(lambda: _count(marks, 1))
    waiters = [await town.spawn_agent(n, "probe") for n in ("i", "c", "k")]
    tasks = [await h.assign("probe") for h in waiters]

    async def all_waiting() -> bool:
        reasons = [(await h.state()).state_reason for h in waiters]
        return reasons == ["waiting for a slot"] * 3

    await eventually(all_waiting)
    with trio.fail_after(5):  # none of these waits for the slot
        assert (await waiters[0].interrupt()).state is AgentState.PAUSED
        closed = await waiters[1].close()  # no round ran: it may be cold already
        assert closed.state in (AgentState.DRAINING, AgentState.COLD)
        await waiters[2].kill()
    await agent_state(waiters[1], AgentState.COLD)
    assert (await waiters[2].state()).state is AgentState.STOPPED
    assert [(await town.tasks.get(t)).attempts for t in tasks] == [0, 0, 0]
    assert rt.context.slots.in_use == 1  # only the busy round's: none leaked
    go.touch()


async def _count(marks: Path, n: int) -> bool:
    return len(list(marks.iterdir())) == n


async def test_early_stop_ends_a_round_that_cannot_succeed(
    town: Town, start_runtime: StartRuntime
) -> None:
    town.config.set("runtime.round_timeout", "600")
    await start_runtime()
    handle = await town.spawn_agent("x", "codex")
    task_id = await handle.assign("print hi; nonetwork")

    async def stopped() -> bool:
        events = await town.messages.recent_events(50, agent=handle.id)
        return any(e.kind == "round" and e.fields.get("outcome") == "transient" for e in events)

    with trio.fail_after(30):  # not the 600 s timeout
        await eventually(stopped, timeout=30)
    log = (town.root / ".tt" / "logs" / "x.log").read_text()
    assert "stopped early" in log
    task = await town.tasks.get(task_id)
    assert task.state is not TaskState.FAILED  # transient: retried later, never failed
    events = await town.messages.recent_events(50)
    retried = [e for e in events if e.kind == "retry" and e.fields.get("task") == task_id]
    assert retried and "transient" in retried[0].text
    assert "waiting for network" in retried[0].text  # the CLI's own words


async def test_task_budget_pauses_before_the_task_spends_more(
    town: Town, start_runtime: StartRuntime
) -> None:
    town.config.set("budget.task_usd", "0.5")
    await start_runtime()
    handle = await town.spawn_agent("t", "claude")
    task = await town.tasks.assign("t", "cost 0.3; fail 1", max_attempts=5)
    await agent_state(handle, AgentState.PAUSED)  # after its 2nd failed round: $0.60
    agent = await handle.state()
    assert agent.state_reason == f"budget: task {task.short_id} limit $0.60 of $0.50"
    spent = await town.tasks.get(task.id)
    assert spent.state is TaskState.ASSIGNED and spent.attempts == 2
    assert spent.usage.cost_usd == 0.6 and spent.usage.rounds == 2
    # Resumed with the limit unchanged: the task is not run again (nor counted).
    await handle.resume()
    await agent_state(handle, AgentState.PAUSED)
    again = await town.tasks.get(task.id)
    assert again.attempts == 2 and again.usage.rounds == 2
    assert (await handle.state()).usage.rounds == 2
