"""tt costs, tt budget show|set, and the cost parts of tt spawn, tt status and tt task show,
from usage recorded on the records (as the runtime records it after each round)."""

from __future__ import annotations

import sys
from functools import partial

import attrs

from tests.cli.clihelp import ok, ok_json, parallel, user_error
from tests.conftest import SCRIPTED_AGENT
from tinytown.cli.status import state_shown
from tinytown.model import Agent, AgentState, Budget, SpawnMode, Task, Usage
from tinytown.services.town import Town
from tinytown.store.usage import add_usage_ops


async def _add_usage(town: Town, key: str, cls: type, usage: Usage) -> None:
    def add(record: Agent | Task) -> tuple[Agent | Task, list[list[str]]]:
        return attrs.evolve(record, usage=record.usage + usage), []

    await town.store.update(cls, key, add, missing=AssertionError)
    if cls is Agent:  # the runtime adds each round to the town's totals too
        await town.store.run_ops(add_usage_ops(town.store, usage))


async def _set_reason(town: Town, agent_id: str, verb: str, reason: str) -> None:
    def change(agent: Agent) -> tuple[Agent, list[list[str]]]:
        return agent.transition(verb, state_reason=reason), []

    await town.store.update(Agent, town.keys.agent(agent_id), change, missing=AssertionError)


async def _spent_town(town: Town) -> tuple[Agent, Agent, Task, Task]:
    alice = await town.agents.spawn("alice")
    bob = await town.agents.spawn("bob")
    one = await town.tasks.assign("alice", "Write the parser")
    two = await town.tasks.assign("bob", "Review the parser")
    await town.tasks.assign("bob", "Not started")
    for key, cls, usage in (
        (town.keys.agent(alice.id), Agent, Usage(12_000, 3_000, 1_000, 0.25, 2, 30.0)),
        (town.keys.agent(bob.id), Agent, Usage(4_000, 1_000, 0, 0.05, 1, 10.0)),
        (town.keys.task(one.id), Task, Usage(12_000, 3_000, 1_000, 0.25, 2, 30.0)),
        (town.keys.task(two.id), Task, Usage(4_000, 1_000, 0, 0.05, 1, 10.0)),
    ):
        await _add_usage(town, key, cls, usage)
    return alice, bob, one, two


async def test_costs_tables_by_agent_and_by_task(tt, town: Town) -> None:
    assert ok(tt("costs")) == "No agents yet.\n"
    _, _, one, two = await _spent_town(town)
    by_agent, by_task, as_json, bad = parallel(
        partial(tt, "costs"),
        partial(tt, "costs", "--by", "task"),
        partial(tt, "costs", "--by", "task", "--json"),
        partial(tt, "costs", "--by", "week"),
    )
    lines = ok(by_agent).splitlines()
    assert lines[0].split() == [
        "AGENT",
        "STATE",
        "ROUNDS",
        "INPUT",
        "OUTPUT",
        "CACHED",
        "COST",
        "TIME",
    ]
    assert lines[1].split() == [
        "alice",
        "starting",
        "2",
        "12,000",
        "3,000",
        "1,000",
        "$0.25",
        "30.0s",
    ]
    assert lines[2].split() == ["bob", "starting", "1", "4,000", "1,000", "0", "$0.05", "10.0s"]
    assert lines[3].split() == ["TOTAL", "-", "3", "16,000", "4,000", "1,000", "$0.30", "40.0s"]
    assert len(lines) == 4  # the town's total is the rows' total: no extra line

    lines = ok(by_task).splitlines()
    assert lines[0].split()[:3] == ["TASK", "AGENT", "STATE"]
    assert lines[1].split()[:4] == [one.id[:8], "alice", "assigned", "2"]
    assert lines[2].split()[:4] == [two.id[:8], "bob", "assigned", "1"]
    assert lines[3].split()[:4] == ["TOTAL", "-", "-", "3"] and len(lines) == 4  # 1 cost 0

    data = ok_json(as_json)
    assert [(r["id"], r["agent"], r["usage"]["cost_usd"]) for r in data["rows"]] == [
        (one.id, "alice", 0.25),
        (two.id, "bob", 0.05),
    ]
    assert data["total"]["input_tokens"] == 16_000 and data["total"]["rounds"] == 3
    assert "invalid choice: 'week'" in user_error(bad, 2)

    await town.lifecycle.kill("bob")
    await town.lifecycle.prune()  # bob's spending stays in the town's total
    lines = ok(tt("costs")).splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["alice", "TOTAL"]
    assert lines[3] == "Town total: $0.30, 20k tokens, 3 rounds."


async def test_budget_set_and_show(tt, town: Town) -> None:
    await _spent_town(town)
    toml = town.root / "tinytown.toml"
    toml.write_text(toml.read_text() + "# keep this comment\n")
    assert ok(tt("budget", "set", "alice", "--usd", "10", "--tokens", "200k")) == (
        "Budget of alice: $10.00 or 200k tokens.\n"
    )
    assert (await town.agents.resolve("alice")).budget == Budget(usd=10.0, tokens=200_000)
    assert ok(tt("budget", "set", "--usd", "2.50")) == (
        "Budget of each agent: $2.50 (tinytown.toml [budget]).\n"
    )
    assert ok(tt("budget", "set", "--task", "--tokens", "1.5M")) == (
        "Budget of each task: 1.50M tokens (tinytown.toml [budget]).\n"
    )
    assert ok(tt("budget", "set", "--town", "--usd", "$50")) == (
        "Budget of the town: $50.00 (tinytown.toml [budget]).\n"
    )
    text = toml.read_text()
    assert "# keep this comment" in text and "town_usd = 50.0" in text
    shown, bare, as_json = parallel(
        partial(tt, "budget", "show"), partial(tt, "budget"), partial(tt, "budget", "--json")
    )
    lines = ok(shown).splitlines()
    assert lines[:3] == [
        "Town:       $50.00; spent $0.30, 20k tokens, 3 rounds",
        "Each agent: $2.50",
        "Each task:  1.50M tokens",
    ]
    assert lines[4].split()[:3] == ["AGENT", "BUDGET", "SPENT"]
    assert lines[5].startswith("alice") and "$10.00 or 200k tokens" in lines[5]
    assert ok(bare) == ok(shown)
    data = ok_json(as_json)
    assert data["town"] == {"usd": 50.0, "tokens": None}
    assert [a["name"] for a in data["agents"]] == ["alice"]
    assert data["spent"]["cost_usd"] == 0.3

    # 'none' removes a limit; the other stays.
    assert ok(tt("budget", "set", "alice", "--usd", "none")) == "Budget of alice: 200k tokens.\n"
    assert ok_json(tt("budget", "set", "--town", "--usd", "none", "--json"))["budget"] is None


async def test_raising_a_budget_says_how_to_resume(tt, town: Town) -> None:
    alice = await town.agents.spawn("alice", budget=Budget(usd=1.0))
    await _set_reason(town, alice.id, "interrupt", "budget: agent limit $1.00 of $1.00")
    out = ok(tt("budget", "set", "alice", "--usd", "5"))
    assert out.splitlines() == [
        "Budget of alice: $5.00.",
        "alice is paused (budget: agent limit $1.00 of $1.00); resume it with 'tt resume alice'.",
    ]
    assert (await town.agents.resolve("alice")).state is AgentState.PAUSED  # not resumed
    out = ok(tt("budget", "set", "--town", "--usd", "100"))
    assert out.splitlines()[1].endswith("resume it with 'tt resume alice'.")


async def test_budget_bad_input_is_one_sentence_and_changes_nothing(tt, town: Town) -> None:
    await town.agents.spawn("alice", budget=Budget(usd=1.0))
    toml = town.root / "tinytown.toml"
    before_file, before_agent = toml.read_bytes(), await town.agents.resolve("alice")
    results = parallel(
        partial(tt, "budget", "set", "alice", "--usd", "lots"),
        partial(tt, "budget", "set", "alice", "--tokens", "0"),
        partial(tt, "budget", "set", "--town", "--usd", "-5"),
        partial(tt, "budget", "set", "alice"),
        partial(tt, "budget", "set", "alice", "--town", "--usd", "5"),
        partial(tt, "budget", "set", "--town", "--task", "--usd", "5"),
        partial(tt, "budget", "set", "nobody", "--usd", "5"),
    )
    assert user_error(results[0], 2) == (
        "--usd: 'lots' is not an amount of dollars (e.g. 5, 2.50 or $5; 'none' for no limit)."
    )
    assert user_error(results[1], 2).startswith("--tokens: '0' is not a number of tokens")
    assert user_error(results[2], 2).startswith("--usd: '-5' is not an amount of dollars")
    assert (
        user_error(results[3], 2) == "Give --usd X, --tokens N, or both ('none' removes a limit)."
    )
    assert user_error(results[4], 2) == "Give AGENT, --town or --task, not more than one."
    assert "not allowed with argument" in user_error(results[5], 2)
    assert user_error(results[6]) == f"No agent named 'nobody' in town {town.name}."
    assert toml.read_bytes() == before_file
    assert await town.agents.resolve("alice") == before_agent


YOLO = f"{sys.executable} {SCRIPTED_AGENT} --dangerously-skip-permissions"


async def test_spawn_budget_resume_session_and_the_notice_once(tt, town: Town) -> None:
    out = ok(tt("spawn", "alice", "--budget", "5", "--budget", "200k"))
    alice = await town.agents.resolve("alice")
    assert alice.budget == Budget(usd=5.0, tokens=200_000)
    assert "Budget: $5.00 or 200k tokens (besides the town's [budget])." in out.splitlines()
    out = ok(tt("spawn", "bob", "--resume-session", "0f9e8d7c-1234-5678-9abc-def012345678"))
    bob = await town.agents.resolve("bob")
    assert (bob.spawn_mode, bob.session_id) == (
        SpawnMode.RESUMED,
        "0f9e8d7c-1234-5678-9abc-def012345678",
    )
    assert "Resumes session 0f9e8d7c-1234-5678-9abc-def012345678 in every round." in out
    assert ok_json(tt("spawn", "carol", "--budget", "$1.5", "--json"))["budget"] == {
        "usd": 1.5,
        "tokens": None,
    }

    bad = parallel(
        partial(tt, "spawn", "dave", "--budget", "lots"),
        partial(tt, "spawn", "dave", "--budget", "5", "--budget", "6"),
        partial(tt, "spawn", "dave", "--resume-session", "abc", "--mode", "fresh"),
        partial(tt, "spawn", "dave", "--resume-session", "not a session"),
    )
    assert user_error(bad[0]).startswith("'lots' is not an amount of dollars")
    assert user_error(bad[1]) == "Give at most one dollar budget (e.g. --budget 5)."
    assert user_error(bad[2], 2) == (
        "--resume-session continues a session: give --mode resumed or no --mode."
    )
    assert user_error(bad[3]).startswith("'not a session' is not a session id")
    assert [a.name for a in await town.agents.list()] == ["alice", "bob", "carol"]

    # A preset that skips the CLI's permission prompts: said plainly, once per town.
    assert "CLI 'scripted' runs" not in out  # its command skips no prompts: no notice
    ok(tt("config", "agent_clis.yolo", YOLO))
    first = ok(tt("spawn", "erin", "--cli", "yolo"))
    notice = next(line for line in first.splitlines() if line.startswith("CLI 'yolo' runs"))
    assert "--dangerously-skip-permissions" in notice and "docs/agents.md" in notice
    second = ok(tt("spawn", "frank", "--cli", "yolo"))
    assert "CLI 'yolo' runs" not in second


async def test_status_shows_spending_and_why_agents_wait(tt, town: Town) -> None:
    alice, bob, _, _ = await _spent_town(town)
    carol = await town.agents.spawn("carol")
    dave = await town.agents.spawn("dave")
    await _set_reason(town, alice.id, "interrupt", "budget: agent limit $0.25 of $0.25")
    await _set_reason(town, bob.id, "ready", "rate limit: claude until 12:03:10")
    await _set_reason(town, carol.id, "ready", "rate limit: claude until 12:03:10")
    await _set_reason(town, dave.id, "ready", "waiting for a slot")
    await town.set_budget(scope="town", usd=20.0)

    def session(agent: Agent) -> tuple[Agent, list[list[str]]]:
        return attrs.evolve(agent, session_id="sess-42", worktree=".tt/worktrees/bob",
                            branch="tt/bob"), []  # fmt: skip

    await town.store.update(Agent, town.keys.agent(bob.id), session, missing=AssertionError)
    text, deep, data = parallel(
        partial(tt, "status"), partial(tt, "status", "--deep"), partial(tt, "status", "--json")
    )
    out = ok(text)
    assert "Spent:   $0.30, 20k tokens, 3 rounds (budget $20.00)" in out.splitlines()
    assert (
        "Paused for budget: alice (raise it with 'tt budget set', then 'tt resume alice')"
        in out.splitlines()
    )
    assert "Rate limit: claude until 12:03:10 (2 agents wait)" in out.splitlines()
    assert any(line.startswith("Waiting for a slot: dave") for line in out.splitlines())
    table = out.split("\nAgents (", 1)[1].split("\n\n", 1)[0].splitlines()
    assert table[1].split()[-2:] == ["TOKENS", "COST"]
    alice_row = next(line for line in table if line.startswith("alice"))
    assert alice_row.split()[-2:] == ["15k", "$0.25"]
    hosted = state_shown(await town.agents.resolve("alice"), None, hosted=True)
    assert hosted == "paused (budget: agent limit $0.25 of $0.25)"  # with a runtime

    deep_out = ok(deep)
    assert any(
        line.startswith("alice (") and line.endswith("(budget: agent limit $0.25 of $0.25)")
        for line in deep_out.splitlines()
    )
    assert "  mode: fresh   session: sess-42" in deep_out.splitlines()
    assert any(  # no real worktree there: the line says what git said
        line.startswith("  worktree: .tt/worktrees/bob on tt/bob: ")
        for line in deep_out.splitlines()
    )
    assert "  spent: $0.25, 15k tokens, 2 rounds   budget: no limit" in deep_out.splitlines()

    status = ok_json(data)
    assert status["usage"]["cost_usd"] == 0.3 and status["usage"]["rounds"] == 3
    assert status["budget"] == {"usd": 20.0, "tokens": None}
    entry = next(a for a in status["agents"] if a["name"] == "alice")
    assert entry["usage"]["input_tokens"] == 12_000
    assert entry["state_shown"].startswith("not running")  # no runtime hosts it


async def test_task_show_attempts_and_spending(tt, town: Town) -> None:
    _, _, one, two = await _spent_town(town)
    out = ok(tt("task", "show", one.id))
    assert "  attempts:    0 of 3 (runtime.max_attempts)" in out.splitlines()
    assert (
        "  spent:       $0.25, 15k tokens, 2 rounds (in 12,000, out 3,000, cached 1,000; 30.0 s)"
        in out.splitlines()
    )
    data = ok_json(tt("task", "show", two.id, "--json"))
    assert data["usage"]["cost_usd"] == 0.05 and data["max_attempts_in_force"] == 3

    assigned, queued, zero, word = parallel(
        partial(tt, "assign", "alice", "Flaky job", "--max-attempts", "5", "--json"),
        partial(tt, "backlog", "add", "Any agent", "--max-attempts", "1", "--json"),
        partial(tt, "assign", "alice", "Never", "--max-attempts", "0"),
        partial(tt, "backlog", "add", "Never", "--max-attempts", "many"),
    )
    flaky = await town.tasks.get(ok_json(assigned)["id"])
    assert flaky.max_attempts == 5
    assert (await town.tasks.get(ok_json(queued)["id"])).max_attempts == 1
    assert "needs 1 or more, not '0'" in user_error(zero, 2)
    assert "'many' is not a whole number" in user_error(word, 2)
    assert "Never" not in {t.description for t in await town.tasks.list()}
    assert "  attempts:    0 of 5" in ok(tt("task", "show", flaky.id)).splitlines()
