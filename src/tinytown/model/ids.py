"""Identifiers and timestamps: UUID v4 strings and UTC RFC 3339 with ``Z``."""

from __future__ import annotations

import datetime as _dt
import re
import uuid

SUPERVISOR_ID = "00000000-0000-0000-0000-000000000001"
SUPERVISOR_ALIASES = ("supervisor", "conductor")

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def new_id() -> str:
    """A fresh lowercase hyphenated UUID v4."""
    return str(uuid.uuid4())


def is_uuid(text: str) -> bool:
    return bool(_UUID_RE.fullmatch(text))


def now() -> str:
    """The current UTC time as RFC 3339 with microseconds and a ``Z`` suffix."""
    return format_time(_dt.datetime.now(_dt.UTC))


def format_time(moment: _dt.datetime) -> str:
    # isoformat writes "+00:00" for UTC: swapped for "Z" (a third faster than strftime).
    return moment.astimezone(_dt.UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_time(text: str) -> _dt.datetime:
    """Read RFC 3339 (``Z`` or ``+00:00``, any fraction precision, as Rust writes nanoseconds)."""
    text = text.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    match = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
    if match and match.group(2) and len(match.group(2)) > 7:
        text = match.group(1) + match.group(2)[:7] + match.group(3)
    moment = _dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return moment.astimezone(_dt.UTC)


def age_seconds(text: str | None) -> float | None:
    """Seconds since the timestamp ``text`` (None when absent or unreadable)."""
    if not text:
        return None
    try:
        return (_dt.datetime.now(_dt.UTC) - parse_time(text)).total_seconds()
    except ValueError:
        return None
