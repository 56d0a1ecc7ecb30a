"""When a rate limit ends, as the CLIs word it: seconds from now, or None.

Forms read (case-insensitive): a duration (``try again in 20s``, ``retry after 1m30s``,
``try again in 4 days 21 hours 44 minutes``, ``Please retry in 37.5s``), a header
(``retry-after: 20``), a Unix time (claude's ``usage limit reached|1767225600``), an ISO
time (``resets at 2026-11-30T05:00:00Z``) and a wall-clock time (``resets 3pm``,
``resets at 3:30pm (Europe/Paris)``, ``try again at 3:45 PM``): the next such time in
the named zone, else in local time.
"""

from __future__ import annotations

import datetime as dt
import re

_UNIT = {
    "ms": 0.001, "millisecond": 0.001, "s": 1, "sec": 1, "second": 1, "m": 60, "min": 60,
    "minute": 60, "h": 3600, "hr": 3600, "hour": 3600, "d": 86400, "day": 86400,
}  # fmt: skip
_PART = (
    r"(\d+(?:\.\d+)?)\s*"
    r"(milliseconds?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d)(?![a-z])"
)
_DURATION = re.compile(
    r"(?:try again|retry|retrying|resets?|wait|available)\w*\s+(?:in|after)\s+"
    rf"((?:{_PART}(?:\s*,?\s*(?:and\s+)?)?)+)",
    re.IGNORECASE,
)
_HEADER = re.compile(r"retry[-_ ]after[\"']?\s*[:=]\s*[\"']?(\d+(?:\.\d+)?)", re.IGNORECASE)
_EPOCH = re.compile(r"(?:\||resets?\s+(?:at\s+)?)(\d{10})\b", re.IGNORECASE)
_ISO = re.compile(
    r"(?:resets?|try again|retry)\w*\s+(?:at\s+)?"
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)",
    re.IGNORECASE,
)
_CLOCK = re.compile(
    r"(?:resets?|try again|retry)\s+(?:at\s+)?(\d{1,2})(?::(\d{2}))?\s*([ap]\.?m\.?)?"
    r"(?:\s*\(([\w/+-]+)\))?",
    re.IGNORECASE,
)


def retry_after(text: str, now: dt.datetime | None = None) -> float | None:
    """Seconds until the limit described in ``text`` resets, or None if it names no time."""
    now = now or dt.datetime.now(dt.UTC)
    if match := _DURATION.search(text):
        return round(
            sum(
                float(n) * _UNIT[_unit(u)]
                for n, u in re.findall(_PART, match.group(1), re.IGNORECASE)
            ),
            3,
        )
    if match := _HEADER.search(text):
        return float(match.group(1))
    if match := _EPOCH.search(text):
        return max(0.0, int(match.group(1)) - now.timestamp())
    if match := _ISO.search(text):
        try:
            when = dt.datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        return max(0.0, (when - now).total_seconds())
    for match in _CLOCK.finditer(text):
        hour, minute, meridiem, zone = match.groups()
        if minute is None and meridiem is None:
            continue  # a bare number ("retry 3 times") is no time of day
        seconds = _until_clock(int(hour), int(minute or 0), meridiem, zone, now)
        if seconds is not None:
            return seconds
    return None


def _unit(word: str) -> str:
    word = word.lower()
    if word in _UNIT:
        return word
    return word.rstrip("s") if word.rstrip("s") in _UNIT else word[0]


def _until_clock(
    hour: int, minute: int, meridiem: str | None, zone: str | None, now: dt.datetime
) -> float | None:
    if meridiem:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if meridiem.lower().startswith("p") else 0)
    if hour > 23 or minute > 59:
        return None
    import zoneinfo  # here: only a reset time naming a zone needs it (~2 ms to import)

    tz: dt.tzinfo | None
    try:
        tz = zoneinfo.ZoneInfo(zone) if zone else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = None
    local = now.astimezone(tz)  # tz None: the machine's local time
    when = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if when <= local:
        when += dt.timedelta(days=1)
    return (when - local).total_seconds()
