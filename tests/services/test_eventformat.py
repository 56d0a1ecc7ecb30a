"""The one event format (services/eventformat.py) shared by every display of events."""

from __future__ import annotations

from tinytown.model import new_id
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.eventformat import cut, event_line, event_text, shown
from tinytown.store.events import Event

ALICE = new_id()
BOB = new_id()
NAMES = {ALICE: "alice", BOB: "bob"}


def ev(kind: str, **fields: str) -> Event:
    return Event("1-0", {"kind": kind, "at": "2024-05-01T12:03:04Z", **fields})


def test_the_agent_name_appears_once() -> None:
    state = ev("state", agent=ALICE, text="alice: idle -> working (round)")
    assert event_text(state, NAMES) == "[state] alice: idle -> working (round)"


def test_an_event_without_text_says_what_it_is_about() -> None:
    task = new_id()
    start = ev("start", agent=ALICE, task=task)
    assert event_text(start, NAMES) == f"[start] alice: task {task[:8]}"
    assert event_text(ev("retry", agent=ALICE), NAMES) == "[retry] alice"
    assert not event_text(ev("runtime"), NAMES).endswith(" ")


def test_supervisor_mail_reads_once_as_mail() -> None:
    sent = ev("message", agent=SUPERVISOR_ID, sender=ALICE, type="query", text="why?")
    assert event_text(sent, NAMES) == "[mail] query from alice: why?"
    taken = ev("mail", agent=SUPERVISOR_ID, sender=ALICE, type="query", text="why?")
    assert shown(sent) and not shown(taken)


def test_messages_between_agents_name_both() -> None:
    msg = ev("message", agent=BOB, sender=ALICE, type="task", text="do it")
    assert event_text(msg, NAMES) == "[message] from alice to bob: do it"


def test_ids_are_short_everywhere_in_a_line() -> None:
    full = new_id()
    crash = ev("crash", agent=full, text=f"agent {full} crashed")
    line = event_text(crash, NAMES)
    assert full not in line
    assert line == f"[crash] agent {full[:8]} crashed"  # the name once


def test_long_texts_are_cut_at_a_word_with_an_ellipsis() -> None:
    text = "word " * 60
    line = event_text(ev("fail", agent=ALICE, text=text), NAMES)
    assert line.endswith("word…")
    assert len(line) < 200
    assert cut("abcdefghij klmnopqrstuvwxyz", 20) == "abcdefghij…"
    assert cut("short", 20) == "short"


def test_event_line_starts_with_the_time() -> None:
    line = event_line(ev("spawn", agent=ALICE, text="spawned alice (claude)"), NAMES)
    hh, mm, ss = line.split()[0].split(":")
    assert line.endswith(" [spawn] spawned alice (claude)") and len(hh + mm + ss) == 6
