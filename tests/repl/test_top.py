"""The dashboard (``tt top``) driven by keys through prompt-toolkit's pipe input, its
screen read from what the renderer drew to a captured VT100 output, against the real
Redis (and a real runtime where an action needs one)."""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import attrs
import pytest
import trio
from prompt_toolkit.data_structures import Size
from prompt_toolkit.input import PipeInput
from prompt_toolkit.output.vt100 import Vt100_Output

from tinytown.errors import RedisUnavailableError
from tinytown.model import AgentState, TaskState, Usage
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.model.message import Query
from tinytown.repl.top import Dashboard
from tinytown.repl.top.model import Tracker
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town
from tinytown.store import indexes
from tinytown.store.records import Store
from tinytown.store.usage import add_usage_ops

ROWS, COLUMNS = 30, 160
UP, DOWN = "\x1b[A", "\x1b[B"


def screen_text(board: Dashboard) -> str:
    """What the terminal shows now: the renderer's last screen, as lines of text."""
    screen = board.screen.app.renderer._last_screen
    if screen is None:
        return ""
    lines = []
    for y in range(ROWS):
        row = screen.data_buffer[y]
        lines.append("".join(row[x].char for x in range(COLUMNS)).rstrip())
    return "\n".join(lines)


@attrs.define
class Board:
    board: Dashboard
    pipe: PipeInput
    done: trio.Event

    def text(self) -> str:
        return screen_text(self.board)

    def row(self, name: str) -> str:
        """The table row of agent ``name`` ('' if not shown)."""
        for line in self.text().splitlines():
            if line[1:].startswith(f"{name} ("):
                return line
        return ""

    async def shows(self, *texts: str, timeout: float = 5.0) -> str:
        """Wait until every one of ``texts`` is on screen; fail with the screen."""
        return await self.until(lambda: all(t in self.text() for t in texts), f"{texts!r}")

    async def until(self, check: Callable[[], bool], what: str, timeout: float = 5.0) -> str:
        with trio.move_on_after(timeout):
            while not check():
                await trio.sleep(0.02)
            return self.text()
        raise AssertionError(f"never true: {what}; the screen shows:\n{self.text()}")

    def keys(self, text: str) -> None:
        self.pipe.send_text(text)


@pytest.fixture
async def board(town: Town, pipe: PipeInput) -> AsyncIterator[Board]:
    output = Vt100_Output(io.StringIO(), lambda: Size(rows=ROWS, columns=COLUMNS), term="xterm")
    dashboard = Dashboard(town, input=pipe, output=output, min_redraw=0.05)
    done = trio.Event()

    async def run() -> None:
        try:
            await dashboard.run()
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await dashboard.ready.wait()
        yield Board(dashboard, pipe, done)
        nursery.cancel_scope.cancel()


async def agent_state(town: Town, name: str) -> AgentState:
    return (await town.agents.resolve(name)).state


async def wait_state(town: Town, name: str, state: AgentState) -> None:
    with trio.fail_after(10):
        while await agent_state(town, name) is not state:
            await trio.sleep(0.02)


async def test_rows_states_and_header(town: Town, runtime: Runtime, board: Board) -> None:
    await town.spawn_agent("alice", role="architect")
    await town.spawn_agent("bob")
    await wait_state(town, "alice", AgentState.IDLE)
    await wait_state(town, "bob", AgentState.IDLE)
    shown = await board.shows("agents 2: idle 2", "running pid")
    assert "architect" in board.row("alice") and "idle" in board.row("alice")
    assert "idle" in board.row("bob")
    assert "[spawn] alice" in shown or "spawned alice" in shown  # the events pane


async def test_rounds_per_minute_and_the_cost(town: Town, runtime: Runtime, board: Board) -> None:
    alice = await town.spawn_agent("alice")
    await alice.assign("print hello")
    await board.shows("1 rounds/min", "completed 1")  # the round's event, in the last minute
    assert "$" not in board.text()  # the scripted agent reports no cost: none is shown
    # A round of a CLI that reports one (as the runtime records it: the town's totals and
    # a 'round' event, in one step).
    ops = add_usage_ops(town.store, Usage(input_tokens=10, cost_usd=0.25, rounds=1))
    await town.store.run_ops([*ops, town.store.event_op("round", agent=alice.id, text="x")])
    await board.shows("$0.25", "2 rounds/min")


async def test_interrupt_and_resume_the_selected_agent(
    town: Town, runtime: Runtime, board: Board
) -> None:
    for name in ("alice", "bob"):
        await town.spawn_agent(name)
        await wait_state(town, name, AgentState.IDLE)
    await board.until(lambda: "idle" in board.row("bob"), "bob idle")
    assert board.row("alice").startswith("▶")  # the first agent is selected
    board.keys(DOWN)
    await board.until(lambda: board.row("bob").startswith("▶"), "bob selected")
    board.keys("i")
    await wait_state(town, "bob", AgentState.PAUSED)
    await board.until(lambda: "paused" in board.row("bob"), "bob shown paused")
    assert await agent_state(town, "alice") is AgentState.IDLE
    await board.shows("bob (")  # what 'tt interrupt' said, in the status line
    assert any("bob" in line and "paused" in line for line in board.board.said)
    board.keys("r")
    await wait_state(town, "bob", AgentState.IDLE)
    board.keys(UP + "c")  # close alice: it drains, then goes cold
    await wait_state(town, "alice", AgentState.COLD)
    await board.until(lambda: "cold" in board.row("alice"), "alice shown cold")


async def test_kill_asks_first(town: Town, runtime: Runtime, board: Board) -> None:
    await town.spawn_agent("alice")
    await wait_state(town, "alice", AgentState.IDLE)
    await board.until(lambda: "idle" in board.row("alice"), "alice idle")
    board.keys("k")
    await board.shows("kill alice (")
    board.keys("n")
    await board.shows("not killed")
    assert await agent_state(town, "alice") is AgentState.IDLE
    board.keys("k")
    await board.shows("kill alice (")
    board.keys("y")
    await wait_state(town, "alice", AgentState.STOPPED)
    await board.until(lambda: "stopped" in board.row("alice"), "alice shown stopped")


async def test_filter_and_sort(town: Town, board: Board) -> None:
    for name, role in (("zed", "tester"), ("amy", "devops"), ("kim", "tester")):
        await town.spawn_agent(name, role=role)
    await board.until(lambda: bool(board.row("kim")), "three rows")

    def order() -> list[str]:
        return [n for n in ("zed", "amy", "kim") for _ in [0] if board.row(n)]

    def positions() -> list[str]:
        lines = board.text().splitlines()
        found = [(i, n) for i, line in enumerate(lines) for n in ("zed", "amy", "kim")
                 if line[1:].startswith(f"{n} (")]  # fmt: skip
        return [n for _, n in sorted(found)]

    assert positions() == ["zed", "amy", "kim"]  # the town's order: oldest first
    board.keys("s")  # by name
    await board.until(lambda: positions() == ["amy", "kim", "zed"], "sorted by name")
    assert "sort: name" in board.text()
    board.keys("/tester")
    await board.until(lambda: positions() == ["kim", "zed"], "filtered on the role")
    board.keys("\r")  # keep the filter
    await board.shows("filter: tester")
    board.keys("/")
    board.keys("\x03")  # Ctrl-C (or Esc) while typing clears the filter
    await board.until(lambda: positions() == ["amy", "kim", "zed"], "filter cleared")
    assert order()


async def test_assign_a_task(town: Town, board: Board) -> None:
    alice = await town.spawn_agent("alice")
    await board.until(lambda: bool(board.row("alice")), "alice shown")
    board.keys("a")
    await board.shows("assign to alice (")
    board.keys("-- write the API docs\r")  # a text that looks like an option is text
    with trio.fail_after(5):
        while not (tasks := await town.tasks.list(agent=alice.id)):
            await trio.sleep(0.02)
    assert tasks[0].description == "-- write the API docs"
    assert tasks[0].state is TaskState.ASSIGNED
    await board.shows("Assigned task")
    # No runtime: it waits in alice's inbox (the INBOX column), not yet her current task.
    await board.until(lambda: board.row("alice").split()[-4:] == ["1", "0", "0", "0"], "inbox 1")


async def test_an_action_that_fails_says_why(town: Town, board: Board) -> None:
    await town.spawn_agent("alice")
    await board.until(lambda: bool(board.row("alice")), "alice shown")
    board.keys("r")  # resume an agent that is not paused: refused, as by 'tt resume'
    await board.shows("Agent alice is starting, not paused.")
    assert await agent_state(town, "alice") is AgentState.STARTING


async def test_q_leaves_and_the_town_keeps_running(
    town: Town, runtime: Runtime, board: Board
) -> None:
    await board.shows("running pid")
    board.keys("q")
    with trio.fail_after(5):
        await board.done.wait()
    assert await town.runtime() is not None


async def test_cancelled_it_gives_the_terminal_back(town: Town, pipe: PipeInput) -> None:
    output = Vt100_Output(io.StringIO(), lambda: Size(rows=ROWS, columns=COLUMNS), term="xterm")
    dashboard = Dashboard(town, input=pipe, output=output)
    # Threads at work: trio's idle pool threads ("Trio thread N") linger for 10 s after
    # their job and are not the dashboard's.
    def busy() -> int:
        return sum(not t.name.startswith("Trio thread ") for t in threading.enumerate())

    before = busy()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dashboard.run)
            await dashboard.ready.wait()
            assert dashboard.screen.app.is_running
            assert busy() > before  # the dashboard's thread reads the keyboard
            scope.cancel()
    assert not dashboard.screen.app.is_running  # its thread no longer reads the keyboard
    with trio.fail_after(5):
        while busy() > before:
            await trio.sleep(0.01)


async def test_log_tail_round_clock_and_live_log(town: Town, board: Board) -> None:
    await town.spawn_agent("alice")
    logs = town.root / ".tt" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 125))
    log = logs / "alice.log"
    log.write_text(
        f"--- round 1 pid=1 started {started} argv=['x'] ---\n"
        "reading the code\n\x1b[1mcompiling\x1b[0m module a\n"
    )
    await board.until(lambda: "compiling module a" in board.row("alice"), "latest line")
    # The round has run for two minutes (2m05s at the start; the first draw may be late).
    assert re.search(r"\b2m\d\ds", board.row("alice"))
    board.keys("\r")  # the log, live
    await board.shows("log of alice", "reading the code")
    with log.open("a") as fh:
        fh.write("tests pass\n--- round 1 pid=1 exited returncode=0 after 125.0 s ---\n")
    await board.shows("tests pass")
    await board.until(
        lambda: "tests pass" in board.row("alice") and "2m" not in board.row("alice"),
        "the round is over: the latest line, no clock",
    )
    board.keys("\r")
    await board.until(lambda: "log of alice" not in board.text(), "log closed")


async def test_mail_and_questions(town: Town, board: Board) -> None:
    alice = await town.spawn_agent("alice")
    await town.messages.send(SUPERVISOR_ID, Query("is the build green?"), sender=alice.id)
    shown = await board.shows("[mail] query from alice: is the build green?", "1 question")
    question = (await town.messages.questions_waiting())[0]
    assert f"? reply {question.id[:8]}: alice asks: is the build green?" in shown
    await town.messages.reply(question.id, "yes")  # answered: it no longer waits
    await board.until(lambda: "? reply" not in board.text(), "the question answered")
    assert "1 question" not in board.text()


async def test_scrolls_to_the_selection(town: Town, board: Board) -> None:
    for n in range(40):
        await town.spawn_agent(f"a{n:02d}")
    await board.shows("agents 40")
    assert not board.row("a39")
    board.keys("\x1b[F")  # End
    await board.until(lambda: board.row("a39").startswith("▶"), "scrolled to the last")
    assert not board.row("a00")
    board.keys("\x1b[H")  # Home
    await board.until(lambda: board.row("a00").startswith("▶"), "back to the first")


async def test_reads_again_only_the_agents_events_name(town: Town) -> None:
    agents = [await town.spawn_agent(f"w{n}") for n in range(30)]
    tracker = Tracker(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(tracker.run)
        assert len(tracker.view.rows) == 30 and tracker.reads == 0
        await agents[7].interrupt()  # recorded directly: no runtime
        with trio.fail_after(5):
            while tracker.view.rows[agents[7].id].agent.state is not AgentState.PAUSED:
                await trio.sleep(0.02)
        assert tracker.reads == 1  # that agent, not the 30
        nursery.cancel_scope.cancel()


async def test_the_backlog_length_is_one_llen_and_stays_right(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = [await town.backlog.add(f"job {n}") for n in range(3)]
    assert await indexes.backlog_length(town.store) == 3
    alice = await town.spawn_agent("alice")

    async def whole_list(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("the dashboard read the whole backlog to count it")

    monkeypatch.setattr(indexes, "backlog_ids", whole_list)
    tracker = Tracker(town)

    async def shows(count: int) -> None:
        with trio.fail_after(5):
            while tracker.view.backlog != count:
                await trio.sleep(0.02)

    async with trio.open_nursery() as nursery:
        await nursery.start(tracker.run)
        assert tracker.view.backlog == 3
        await town.backlog.add("job 3")
        await shows(4)
        await town.backlog.claim(first[0].id, alice.id)
        await shows(3)
        await town.backlog.remove(first[1].id)
        await shows(2)
        nursery.cancel_scope.cancel()
    assert await indexes.backlog_length(town.store) == 2


async def test_the_header_shows_the_backlog(town: Town, board: Board) -> None:
    for n in range(2):
        await town.backlog.add(f"job {n}")
    await board.shows("backlog 2")


async def test_redis_failing_marks_the_view_stale_until_it_answers(
    town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await town.spawn_agent("alice")
    tracker = Tracker(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(tracker.run)

        async def unreachable(*args: object, **kwargs: object) -> object:
            raise RedisUnavailableError("Redis is not answering.")

        # (Store has slots: its reads are replaced on the class, for this test only.)
        with monkeypatch.context() as patched:
            patched.setattr(Store, "mget", unreachable)
            await alice.interrupt()  # an event names alice: reading her fails
            with trio.fail_after(5):
                while not tracker.view.stale:
                    await trio.sleep(0.02)
        with trio.fail_after(5):  # read again (nothing lost): alice's change shows
            while (
                tracker.view.stale
                or tracker.view.rows[alice.id].agent.state is not AgentState.PAUSED
            ):
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


async def test_tt_top_needs_a_terminal(tt: Callable[..., object], town_dir: Path) -> None:
    result = tt("top")
    assert result.returncode == 2  # type: ignore[attr-defined]
    assert "tt top needs an interactive terminal" in result.stderr  # type: ignore[attr-defined]
