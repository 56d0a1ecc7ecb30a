"""The pure and in-memory parts of a round: budgets, task fates, usage shares, the
line watch, CLI holds (virtual time) and the fair slot queue."""

from __future__ import annotations

import trio
import trio.testing

from tinytown.model import Budget, Task, Usage
from tinytown.runtime.linewatch import LINE_MAX, LineWatch
from tinytown.runtime.outcome import Fate, fate, split_usage
from tinytown.runtime.ratelimit import MAX_BACKOFF, CliHolds
from tinytown.runtime.slots import RoundSlots, slot_count
from tinytown.services import budgets
from tinytown.services.agentcli.report import Outcome


def settings(**values: float) -> object:
    def setting(key: str) -> float:
        return values.get(key.replace("budget.", ""), 0)

    return setting


def test_budgets_name_the_first_limit_reached_town_first() -> None:
    limits = budgets.limits(settings(agent_usd=2, town_tokens=1000), Budget(usd=1.0))  # type: ignore[arg-type]
    assert limits.agent == (Budget(2.0, None), Budget(1.0, None)) and limits.task is None
    spent = Usage(input_tokens=10, output_tokens=5, cost_usd=0.5)
    assert budgets.reached(limits, agent=spent, town=spent) is None
    assert budgets.reached(limits, agent=Usage(cost_usd=1.0), town=spent) == (
        "agent limit $1.00 of $1.00"  # its own budget, lower than the town's per-agent one
    )
    town = Usage(input_tokens=900, output_tokens=100)
    assert budgets.reached(limits, agent=Usage(cost_usd=5), town=town) == (
        "town limit 1,000 of 1,000 tokens"
    )
    per_task = budgets.limits(settings(task_usd=0.1))  # type: ignore[arg-type]
    assert budgets.reached(per_task, agent=spent, town=spent, tasks=[("ab" * 16, spent)]) == (
        "task abababab limit $0.50 of $0.10"
    )
    assert budgets.limits(settings()) == budgets.Limits()  # type: ignore[arg-type]
    assert "tt resume w" in budgets.advice("agent limit $1.00 of $1.00", "w")


def test_task_fates() -> None:
    task = Task.new("x")
    once = attrs_evolve(task, attempts=1)
    thrice = attrs_evolve(task, attempts=3)
    assert fate(Outcome.OK, thrice, 3) is Fate.COMPLETE
    assert fate(Outcome.FAILED, once, 3) is Fate.RETRY
    assert fate(Outcome.FAILED, thrice, 3) is Fate.FAIL
    assert fate(Outcome.FAILED, once, 3) is Fate.RETRY
    assert fate(Outcome.FAILED, attrs_evolve(once, max_attempts=1), 3) is Fate.FAIL
    assert fate(Outcome.RATE_LIMITED, thrice, 3) is Fate.RETRY  # never fails the task
    assert fate(Outcome.TRANSIENT, thrice, 3) is Fate.RETRY
    assert fate(Outcome.SETUP, thrice, 3) is Fate.RETRY_UNCOUNTED


def attrs_evolve(task: Task, **changes: object) -> Task:
    import attrs

    return attrs.evolve(task, **changes)  # type: ignore[arg-type]


def test_usage_shares_add_up() -> None:
    usage = Usage(101, 7, 3, 0.3, 1, 2.5)
    shares = split_usage(usage, 3)
    assert sum(s.input_tokens for s in shares) == 101
    assert sum(s.output_tokens for s in shares) == 7
    assert sum(s.cached_tokens for s in shares) == 3
    assert all(s.rounds == 1 and s.duration == 2.5 for s in shares)
    assert round(sum(s.cost_usd for s in shares), 6) == 0.3
    assert split_usage(usage, 1) == [usage] and split_usage(usage, 0) == []


def test_line_watch_sees_whole_lines_of_each_stream_apart() -> None:
    seen: list[str] = []
    found: list[bool] = []

    def check(line: str) -> str | None:
        seen.append(line)
        return "stop" if "waiting for network" in line else None

    watch = LineWatch(check, lambda: found.append(True))
    watch.feed(b"first li", err=False)
    watch.feed(b"err part", err=True)  # never joined to the stdout line
    watch.feed(b"ne\nsecond\r\n", err=False)
    assert seen == ["first line", "second"]
    watch.feed(b" one\nReconnecting... waiting for network\nlater\n", err=True)
    assert seen[-2:] == ["err part one", "Reconnecting... waiting for network"]
    assert watch.found == "stop" and found == [True]
    watch.feed(b"more\n", err=False)  # nothing after the first hit
    assert seen[-1] == "Reconnecting... waiting for network"
    long = LineWatch(lambda line: len(line), lambda: None)
    long.feed(b"x" * (LINE_MAX + 1), err=False)  # bounded: looked at without a newline
    assert long.found == LINE_MAX + 1


async def test_cli_holds_use_the_reset_time_else_doubling_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    holds = CliHolds()
    assert holds.remaining("claude") == 0 and holds.next_end() is None
    assert holds.hold("claude", 30.0, 60.0) == 30.0
    assert holds.held() == {"claude"}
    assert holds.hold("claude", 5.0, 60.0) == 30.0  # a longer hold in force stays
    await trio.sleep(30)
    assert holds.remaining("claude") == 0 and holds.held() == set()
    assert [holds.hold("codex", None, 60.0) for _ in range(3)] == [60.0, 120.0, 240.0]
    await trio.sleep(240)
    holds.succeeded("codex")
    assert holds.hold("codex", None, 60.0) == 60.0  # back to the base after a success
    for _ in range(20):
        holds.hold("gemini", None, 60.0)
    assert holds.remaining("gemini") <= MAX_BACKOFF


async def test_slots_are_fair_and_cap_concurrency(autojump_clock: trio.testing.MockClock) -> None:
    assert slot_count(0) >= 2 and slot_count(3) == 3
    slots = RoundSlots(2)
    started: dict[int, float] = {}
    running = 0
    peak = 0

    async def round_(i: int) -> None:
        nonlocal running, peak
        taken = slots.try_take()
        async with slots.holding(taken):
            started[i] = trio.current_time()
            running += 1
            peak = max(peak, running)
            await trio.sleep(1)
            running -= 1

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(round_, i)
            await trio.testing.wait_all_tasks_blocked()  # arrive in this order
    # First come, first served: two by two, in the order they arrived.
    assert [started[i] - started[0] for i in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert peak == 2 and slots.peak == 2 and slots.in_use == 0
    # A cancelled wait holds no slot.
    async with slots.holding(False):
        async with slots.holding(False):
            with trio.move_on_after(1):
                await slots.take()
            assert slots.in_use == 2
    assert slots.in_use == 0
