"""Costs and budgets through the Python API: tables from recorded usage, budgets set on
agents and in tinytown.toml, spawn options, cheap broadcasts, the once-per-town notice."""

from __future__ import annotations

import sys

import attrs
import pytest
import trio

from tests.conftest import SCRIPTED_AGENT
from tinytown.errors import InvalidInputError, NotFoundError
from tinytown.model import (
    Agent,
    AgentState,
    Budget,
    MessageType,
    SpawnMode,
    Task,
    TaskBody,
    Usage,
)
from tinytown.services.costs import (
    KEEP,
    describe_budget,
    describe_usage,
    format_tokens,
    format_usd,
    parse_budget,
    parse_tokens,
    parse_usd,
)
from tinytown.services.town import Town
from tinytown.store.usage import add_usage_ops

#: A CLI preset whose command carries a permission-skipping flag (never run here).
YOLO = f"{sys.executable} {SCRIPTED_AGENT} --dangerously-skip-permissions"


async def record_usage(town: Town, *, agent: str | None = None, task: str | None = None,
                       usage: Usage) -> None:  # fmt: skip
    """Add ``usage`` to an agent's or a task's record, as the runtime does after a round."""
    if agent is not None:
        key, cls = town.keys.agent(agent), Agent
    else:
        assert task is not None
        key, cls = town.keys.task(task), Task  # type: ignore[assignment]

    def add(record: Agent | Task) -> tuple[Agent | Task, list[list[str]]]:
        return attrs.evolve(record, usage=record.usage + usage), []

    await town.store.update(cls, key, add, missing=lambda: AssertionError(key))  # type: ignore[arg-type]
    if agent is not None:  # the runtime adds each round to the town's totals too
        await town.store.run_ops(add_usage_ops(town.store, usage))


def test_amounts_parse_and_bad_ones_say_why() -> None:
    assert [parse_usd(t) for t in ("5", "2.50", "$5", "5usd", " 7 USD ", "none")] == [
        5.0, 2.5, 5.0, 5.0, 7.0, None,
    ]  # fmt: skip
    assert [parse_tokens(t) for t in ("200000", "200k", "1.5M", "50_000 tokens", "none")] == [
        200_000, 200_000, 1_500_000, 50_000, None,
    ]  # fmt: skip
    assert parse_budget(["5", "200k"]) == Budget(usd=5.0, tokens=200_000)
    assert parse_budget(["$2.5"]) == Budget(usd=2.5)
    assert parse_budget(["30ktok"]) == Budget(tokens=30_000)
    assert parse_budget([]) is None
    for bad in ("0", "-3", "five", "nan", "inf", "5 euro", ""):
        with pytest.raises(InvalidInputError, match="is not an amount of dollars"):
            parse_usd(bad)
    for bad in ("0", "lots", "1.5G", "-5k"):
        with pytest.raises(InvalidInputError, match="is not a number of tokens"):
            parse_tokens(bad)
    with pytest.raises(InvalidInputError, match="at most one dollar budget"):
        parse_budget(["5", "6"])
    with pytest.raises(InvalidInputError, match="at most one token budget"):
        parse_budget(["5k", "6M"])
    assert (format_usd(0), format_usd(0.001), format_usd(1234.5)) == (
        "$0.00", "<$0.01", "$1,234.50",
    )  # fmt: skip
    assert (format_tokens(950), format_tokens(12_345), format_tokens(4_560_000)) == (
        "950", "12.3k", "4.56M",
    )  # fmt: skip
    assert describe_usage(Usage()) == "nothing yet"
    assert describe_usage(Usage(1000, 500, 0, 0.25, 1, 2.0)) == "$0.25, 1.5k tokens, 1 round"
    assert describe_budget(None) == "no limit"
    assert describe_budget(Budget(5, 200_000)) == "$5.00 or 200k tokens"


async def test_costs_per_agent_and_per_task_add_up(town: Town) -> None:
    alice = await town.spawn_agent("alice")
    bob = await town.spawn_agent("bob")
    one = await town.tasks.assign("alice", "First")
    two = await town.tasks.assign("bob", "Second")
    await town.tasks.assign("bob", "Nothing spent yet")
    await record_usage(town, agent=alice.id, usage=Usage(1000, 200, 50, 0.10, 2, 3.0))
    await record_usage(town, agent=bob.id, usage=Usage(500, 100, 0, 0.05, 1, 1.5))
    await record_usage(town, task=one.id, usage=Usage(1000, 200, 50, 0.10, 2, 3.0))
    await record_usage(town, task=two.id, usage=Usage(500, 100, 0, 0.05, 1, 1.5))

    report = await town.costs(by="agent")
    assert [(r.name, r.usage.tokens, r.usage.cost_usd) for r in report.rows] == [
        ("alice", 1200, 0.10),
        ("bob", 600, 0.05),
    ]
    assert report.total == Usage(1500, 300, 50, 0.15, 3, 4.5)
    assert report.town == report.total and report.town_budget is None
    assert await town.usage() == report.total

    by_task = await town.costs(by="task")
    assert [(r.id, r.agent, r.usage.rounds) for r in by_task.rows] == [
        (one.id, "alice", 2),
        (two.id, "bob", 1),
    ]  # the task that cost nothing is left out
    assert by_task.total == report.total
    with pytest.raises(InvalidInputError, match="by agent or by task"):
        await town.costs(by="day")

    # A pruned agent's spending stays in the town's total, not in the rows.
    await bob.kill()
    await town.lifecycle.prune()
    after = await town.costs()
    assert [r.name for r in after.rows] == ["alice"]
    assert after.total == Usage(1000, 200, 50, 0.10, 2, 3.0) and after.town == report.town


async def test_agent_budgets_set_keep_and_remove(town: Town) -> None:
    await town.spawn_agent("alice", budget=Budget(usd=5.0))
    agent = await town.set_budget("alice", tokens=200_000)
    assert isinstance(agent, Agent) and agent.budget == Budget(usd=5.0, tokens=200_000)
    agent = await town.set_budget("alice", usd=None)  # tokens kept
    assert isinstance(agent, Agent) and agent.budget == Budget(tokens=200_000)
    agent = await town.set_budget("alice", tokens=None)
    assert isinstance(agent, Agent) and agent.budget is None
    assert (await town.agents.resolve("alice")).budget is None
    events = await town.messages.recent_events(5)
    assert [e.kind for e in events][-3:] == ["budget-set"] * 3

    before = await town.agents.resolve("alice")
    for bad in ({"usd": 0}, {"usd": -1.0}, {"tokens": 0}, {"usd": float("nan")}, {}):
        with pytest.raises(InvalidInputError):
            await town.set_budget("alice", **bad)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        await town.set_budget("nobody", usd=1.0)
    with pytest.raises(InvalidInputError, match="not both"):
        await town.set_budget("alice", usd=1.0, scope="town")
    assert await town.agents.resolve("alice") == before  # nothing changed


async def test_default_budgets_go_to_tinytown_toml_keeping_comments(town: Town) -> None:
    path = town.root / "tinytown.toml"
    path.write_text(path.read_text() + "\n# my own note: keep me\n")
    assert await town.set_budget(scope="town", usd=50.0) == Budget(usd=50.0)
    assert await town.set_budget(scope="task", tokens=100_000) == Budget(tokens=100_000)
    assert await town.set_budget(scope="agent", usd=2.5, tokens=KEEP) == Budget(usd=2.5)
    text = path.read_text()
    assert "# my own note: keep me" in text
    assert "town_usd = 50.0" in text and "task_tokens = 100000" in text
    budgets = await town.budgets()
    assert (budgets.town, budgets.task, budgets.agent) == (
        Budget(usd=50.0),
        Budget(tokens=100_000),
        Budget(usd=2.5),
    )
    assert await town.set_budget(scope="town", usd=None) is None  # written as 0: no limit
    assert "town_usd = 0.0" in path.read_text()
    before = path.read_bytes()
    with pytest.raises(InvalidInputError):
        await town.set_budget(scope="town", usd=-5.0)
    with pytest.raises(InvalidInputError):
        await town.set_budget(scope="week", usd=5.0)  # type: ignore[arg-type]
    assert path.read_bytes() == before


async def test_raising_a_budget_does_not_resume_a_paused_agent(town: Town) -> None:
    handle = await town.spawn_agent("alice", budget=Budget(usd=1.0))

    def paused(agent: Agent) -> tuple[Agent, list[list[str]]]:  # as the runtime pauses it
        new = agent.transition("interrupt", state_reason="budget: agent limit $1.00 of $1.00")
        return new, []

    await town.store.update(Agent, town.keys.agent(handle.id), paused, missing=AssertionError)
    await town.set_budget("alice", usd=10.0)
    agent = await handle.state()
    assert agent.state is AgentState.PAUSED and agent.budget == Budget(usd=10.0)
    assert [a.name for a in await town.spending.paused_for_budget()] == ["alice"]
    await handle.resume()  # what the user does next
    assert (await handle.state()).state is AgentState.IDLE
    assert await town.spending.paused_for_budget() == []


async def test_spawn_records_budget_and_resumed_session(town: Town) -> None:
    handle = await town.spawn_agent(
        "alice", budget=Budget(tokens=200_000), session_id="5f1c2d3e-aaaa-bbbb-cccc-0123456789ab"
    )
    agent = await handle.state()
    assert agent.budget == Budget(tokens=200_000)
    assert agent.session_id == "5f1c2d3e-aaaa-bbbb-cccc-0123456789ab"
    assert agent.spawn_mode is SpawnMode.RESUMED
    await town.spawn_agent("parent")
    for kwargs, message in (
        ({"session_id": "has space"}, "is not a session id"),
        ({"session_id": ""}, "is not a session id"),
        ({"session_id": "x", "mode": "forkedcontext", "parent": "parent"}, "forkedcontext"),
        ({"budget": Budget(usd=0.0)}, "more than 0"),
        ({"budget": Budget(tokens=-1)}, "1 or more"),
    ):
        with pytest.raises(InvalidInputError, match=message):
            await town.spawn_agent("bob", **kwargs)  # type: ignore[arg-type]
    assert [a.name for a in await town.agents.list()] == ["alice", "parent"]


async def test_broadcast_text_is_a_note_and_a_task_body_is_work(town: Town) -> None:
    alice = await town.spawn_agent("alice")
    note, reached = await town.broadcast("stand-up at 5")
    work, _ = await town.broadcast(TaskBody("print hi"))
    assert reached == 1 and note.type is MessageType.INFORMATIONAL and not note.actionable
    queued, _ = await town.messages.inbox(alice.id)
    assert [m.type for m in queued] == [MessageType.INFORMATIONAL, MessageType.TASK]
    assert work.actionable


async def test_the_permission_notice_is_shown_once_per_town(town: Town) -> None:
    town.config.data["agent_clis"]["yolo"] = {"command": YOLO}
    town.config.save()
    assert await town.agents.safety_notice_once("scripted") is None  # asks as usual
    notices: list[str | None] = []

    async def spawn_and_ask(n: int) -> None:
        agent = (await town.spawn_agent(f"a{n}", "yolo")).id
        notices.append(await town.agents.safety_notice_once((await town.agents.get(agent)).cli))

    async with trio.open_nursery() as nursery:  # concurrent spawns: still one notice
        for n in range(4):
            nursery.start_soon(spawn_and_ask, n)
    shown = [n for n in notices if n]
    assert len(shown) == 1 and len(notices) == 4
    assert "--dangerously-skip-permissions" in shown[0] and "docs/agents.md" in shown[0]
    other = await Town.connect(town.root)  # another process, later: still remembered
    try:
        assert await other.agents.safety_notice_once("yolo") is None
    finally:
        await other.aclose()


async def test_the_agent_handle_reads_usage_sets_budget_and_max_attempts(town: Town) -> None:
    handle = await town.spawn_agent("alice")
    assert await handle.usage() == Usage()
    await record_usage(town, agent=handle.id, usage=Usage(10, 5, 0, 0.01, 1, 0.5))
    assert await handle.usage() == Usage(10, 5, 0, 0.01, 1, 0.5)
    agent = await handle.set_budget(usd=3.0)
    assert agent.budget == Budget(usd=3.0) and (await handle.state()).budget == Budget(usd=3.0)
    with pytest.raises(InvalidInputError):
        await handle.set_budget(tokens=0)
    assert (await handle.state()).budget == Budget(usd=3.0)
    task_id = await handle.assign(attrs.evolve(Task.new("Flaky"), max_attempts=5))
    assert (await town.tasks.get(task_id)).max_attempts == 5
    assert (await town.tasks.get(await handle.assign("Plain"))).max_attempts is None
