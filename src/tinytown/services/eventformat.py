"""The one format of an event as a line of text, shared by every display of events.

``tt events``, ``tt history``, the REPL's feed and ``watch``, and ``tt run``'s echo all
print events through :func:`event_text` / :func:`event_line`:

    HH:MM:SS [kind] who: text

* ``who`` is the agent's name, written once (a text that starts with it does not repeat
  it: ``[state] alice: idle -> working (round)``);
* an event without text says what it is about (``[start] alice: task 1234abcd``) or has
  no ``: `` at all;
* ids are short (the first 8 hex digits) in every line, also inside texts; full ids are
  only in ``--json``;
* long texts are cut at a word boundary, marked with ``…``;
* a message to the supervisor reads ``[mail] from alice: text``, and is printed once:
  the runtime's ``mail`` event (written when the supervisor takes that message) repeats a
  ``message`` event or a task outcome already shown, so :func:`shown` leaves it out of
  one-line displays (it stays in the stream and in ``--json``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tinytown.model.ids import SUPERVISOR_ID, parse_time
from tinytown.store.events import Event

#: Longest text of one event line (before the cut and its ``…``).
TEXT_WIDTH = 160
#: Event kinds never printed as a line (see the module docstring).
HIDDEN = frozenset({"mail"})
#: Message types not worth naming in a mail line (plain work, notes).
_PLAIN_TYPES = frozenset({"", "task", "informational"})
_UUID = re.compile(r"\b([0-9a-f]{8})-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def one_line(text: str | None) -> str:
    """Collapse whitespace and newlines into single spaces."""
    return " ".join(str(text or "").split())


def cut(text: str | None, width: int = TEXT_WIDTH) -> str:
    """One line of at most ``width`` characters; a longer text is cut at a word boundary
    (mid-word only when one word is longer than half the width) and ends with ``…``."""
    flat = one_line(text)
    if len(flat) <= width:
        return flat
    if width <= 1:
        return "…"[:width]
    head = flat[: width - 1]
    space = head.rfind(" ")
    if space >= width // 2:
        head = head[:space]
    return head.rstrip(" ,;:.-") + "…"


def short_ids(text: str) -> str:
    """Every full UUID in ``text`` written as its first 8 hex digits."""
    return _UUID.sub(r"\1", text)


def short(ident: str | None) -> str:
    """The first 8 characters of an id, or ``-``."""
    return ident[:8] if ident else "-"


def clock(stamp: str | None) -> str:
    """``HH:MM:SS`` in local time for an RFC 3339 timestamp."""
    if not stamp:
        return "--:--:--"
    try:
        return parse_time(stamp).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"


def name_for(agent_id: str | None, names: Mapping[str, str]) -> str:
    """A person-readable name for an agent id: its name, ``supervisor``, or a short id."""
    if not agent_id:
        return "-"
    if agent_id == SUPERVISOR_ID:
        return "supervisor"
    return names.get(agent_id) or short(agent_id)


def shown(event: Event) -> bool:
    """Whether one-line displays print ``event`` at all (``mail`` repeats another event)."""
    return event.kind not in HIDDEN


def is_mail(event: Event) -> bool:
    """A message for the supervisor (people), as it is sent or as the runtime took it."""
    return event.kind == "mail" or (event.kind == "message" and event.agent == SUPERVISOR_ID)


def event_text(event: Event, names: Mapping[str, str], width: int = TEXT_WIDTH) -> str:
    """``[kind] who: text`` for one event (no time: see :func:`event_line`)."""
    fields = event.fields
    text = short_ids(one_line(fields.get("text", "")))
    sender = fields.get("sender")
    if is_mail(event):
        kind = fields.get("type", "")
        what = "" if kind in _PLAIN_TYPES else f"{kind} "
        return f"[mail] {what}from {name_for(sender, names)}: {cut(text, width)}".rstrip()
    if event.kind in ("message", "broadcast") and sender:
        kind = fields.get("type", "")
        what = "" if kind in _PLAIN_TYPES else f"{kind} "
        to = "" if event.kind == "broadcast" else f" to {name_for(event.agent, names)}"
        head = f"[{event.kind}] {what}from {name_for(sender, names)}{to}"
        return f"{head}: {cut(text, width)}" if text else head
    who = name_for(event.agent, names) if event.agent else ""
    if who and text.startswith(f"{who}: "):
        text = text[len(who) + 2 :]  # the agent's name once
    if not text and fields.get("task"):
        text = f"task {short(fields['task'])}"
    if who and who not in text.split():
        return f"[{event.kind}] {who}: {cut(text, width)}" if text else f"[{event.kind}] {who}"
    return f"[{event.kind}] {cut(text, width)}".rstrip()


def event_line(event: Event, names: Mapping[str, str], width: int = TEXT_WIDTH) -> str:
    """``HH:MM:SS [kind] who: text``: the line every display prints for ``event``."""
    return f"{clock(event.at)} {event_text(event, names, width)}"


__all__ = [
    "TEXT_WIDTH",
    "clock",
    "cut",
    "event_line",
    "event_text",
    "is_mail",
    "name_for",
    "one_line",
    "short",
    "short_ids",
    "shown",
]
