"""The dashboard's reading of agents' logs: the latest line and the round clock, from the
end of the file, across growth, long output and rotation; the table's cells, the header,
and the canvas's cells."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest

from tinytown.model import Agent, AgentState
from tinytown.repl.top import logtail
from tinytown.repl.top.canvas import _cells
from tinytown.repl.top.logtail import LogTails, LogView, Tail
from tinytown.repl.top.rows import cells, layout, state_label
from tinytown.repl.top.rows import header as header_lines
from tinytown.repl.top.view import MailLine, Row, View

STAMP = "2026-01-02T03:04:05Z"
EPOCH = 1767323045.0  # STAMP


def header(n: int, stamp: str = STAMP) -> str:
    return f"--- round {n} pid=42 started {stamp} argv=['x'] ---\n"


def footer(n: int) -> str:
    return f"--- round {n} pid=42 exited returncode=0 after 1.0 s ---\n"


def test_latest_line_and_round(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    tails = LogTails()
    assert tails.look(log) == Tail()  # no log yet
    log.write_text(header(1) + "one\ntwo\n")
    assert tails.look(log) == Tail("two", True, EPOCH)
    with log.open("a") as fh:
        fh.write("three\n" + footer(1))
    assert tails.look(log) == Tail("three", False, None)  # the footer is not output
    with log.open("a") as fh:
        fh.write(header(2, "2026-01-02T03:05:00Z") + "err| warning: x\n")
    assert tails.look(log) == Tail("err| warning: x", True, EPOCH + 55)


def test_an_unchanged_log_is_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "a.log"
    log.write_text(header(1) + "working\n")
    tails = LogTails()
    first = tails.look(log)
    opened: list[object] = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    assert tails.look(log) is first
    assert opened == []
    with log.open("a") as fh:
        fh.write("more\n")
    assert tails.look(log).line == "more"
    assert len(opened) == 1  # read once it changed


def test_only_the_end_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "a.log"
    log.write_text(header(1) + "x" * 100 + "\n" + ("filler line\n" * 200_000) + "last words\n")
    reads: list[int] = []
    real_open = open

    class Counting:
        def __init__(self, fh: object) -> None:
            self.fh = fh

        def __enter__(self) -> Counting:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()  # type: ignore[attr-defined]

        def seek(self, n: int) -> None:
            self.fh.seek(n)  # type: ignore[attr-defined]

        def read(self, n: int = -1) -> bytes:
            data = self.fh.read(n)  # type: ignore[attr-defined]
            reads.append(len(data))
            return data

    monkeypatch.setattr("builtins.open", lambda *a, **k: Counting(real_open(*a, **k)))
    tail = LogTails().look(log)
    assert tail.line == "last words"
    # The header is 2.4 MB back: past the bounded scan, so the round is not claimed...
    assert tail.in_round is False
    pieces = logtail.MAX_SCAN // logtail.CHUNK + 1
    assert sum(reads) <= logtail.CHUNK + pieces * (logtail.CHUNK + logtail.OVERLAP)


def test_a_new_round_hidden_in_long_output_is_found(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(header(1) + "a\n")
    tails = LogTails()
    assert tails.look(log).round_started == EPOCH
    with log.open("a") as fh:  # round 1 ends, round 2 starts and writes 50 KB
        fh.write(footer(1) + header(2, "2026-01-02T03:10:05Z") + "y" * 50_000 + "\nend\n")
    assert tails.look(log) == Tail("end", True, EPOCH + 360)


def test_rotation_keeps_the_round(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text(header(1) + "before\n")
    tails = LogTails()
    assert tails.look(log).in_round
    os.replace(log, tmp_path / "a.log.1")
    log.write_text("after the rotation\n")
    assert tails.look(log) == Tail("after the rotation", True, EPOCH)


def test_escapes_and_control_characters_are_removed(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"\x1b[32mgreen\x1b[0m\tdone\x07 \xff\n")
    assert LogTails().look(log).line == "green done \ufffd"


def test_log_view_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    view = LogView()
    assert view.lines(log, 5) == []
    log.write_text("".join(f"line {n}\n" for n in range(100)))
    assert view.lines(log, 3) == ["line 97", "line 98", "line 99"]
    with log.open("a") as fh:
        fh.write("line 100\n")
    assert view.lines(log, 2) == ["line 99", "line 100"]


def agent(state: AgentState = AgentState.IDLE, reason: str | None = None) -> Agent:
    return Agent("0" * 8 + "-0000-0000-0000-000000000001", "alice", "Ada", "x", "tester",
                 state=state, state_reason=reason)  # fmt: skip


@pytest.mark.parametrize(
    ("state", "reason", "hosted", "label"),
    [
        (AgentState.WORKING, None, True, "working"),
        (AgentState.IDLE, None, False, "idle (no runtime)"),
        (AgentState.STOPPED, None, False, "stopped"),
        (AgentState.WORKING, "waiting for a slot", True, "waiting for a slot"),
        (AgentState.PAUSED, "budget: agent limit $1.00 of $1.00", True,
         "paused: budget: agent limit $1.00 of $1.00"),
        (AgentState.IDLE, "rate limit: claude until 12:03:10", True,
         "idle: rate limit: claude until 12:03:10"),
        (AgentState.ERROR, "setup: not logged in", True, "error: setup: not logged in"),
    ],
)  # fmt: skip
def test_state_labels(state: AgentState, reason: str | None, hosted: bool, label: str) -> None:
    assert state_label(Row(agent(state, reason)), hosted)[0] == label


def test_cells_show_the_round_clock_only_in_a_round() -> None:
    row = Row(agent(AgentState.WORKING), inbox=3, inflight=1)
    shown = cells(row, Tail("compiling", True, 1000.0), True, now=1000.0 + 125)
    assert shown["ROUND"][0] == "2m05s"
    assert shown["OUTPUT"][0] == "compiling"
    assert (shown["INBOX"][0], shown["FLIGHT"][0]) == ("3", "1")
    assert cells(row, Tail("done", False, None), True)["ROUND"][0] == "-"


def test_narrow_terminals_give_up_columns_not_the_output() -> None:
    wide = [c.title for c in layout(200)]
    assert wide[0] == "NAME" and wide[-1] == "OUTPUT" and "ROLE" in wide
    narrow = layout(90)
    assert "ROLE" not in [c.title for c in narrow]
    assert narrow[-1].title == "OUTPUT" and narrow[-1].width >= 24
    assert 1 + sum(c.width + 1 for c in narrow) - 1 <= 90


def test_wide_characters_take_two_cells_and_lines_are_cut() -> None:
    cells = _cells([("", "a漢b"), ("bold", "cdef")], 5, "")
    assert [c.char for c in cells] == ["a", "漢", "", "b", "c"]
    assert cells[-1].style == "bold"
    assert len(_cells([("", "漢漢漢")], 5, "")) == 4  # a wide character never half-shown


def test_header_says_what_the_town_is_doing() -> None:
    row = Row(agent(AgentState.WORKING))
    view = View(town="shop", loaded=True, rows={row.agent.id: row}, counts={AgentState.WORKING: 1})
    text = "".join(f[1] for f in header_lines(view))
    assert "shop · not running" in text and "agents 1: working 1" in text
    assert "$" not in text  # no cost reported: none shown
    busy = attrs.evolve(view, town_cost=1.5, stale=True, questions=(MailLine("q", True),))
    text = "".join(f[1] for f in header_lines(busy))
    assert "$1.50" in text and "Redis unreachable" in text and "1 question" in text
