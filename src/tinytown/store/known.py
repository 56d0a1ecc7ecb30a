"""What this process last saw of each record: a hint for compare-and-set, never a truth.

A change to a record is a compare-and-set (``Store.apply`` with the raw value read as the
expected value). Reading that value first costs a round trip, although the process that
changes a record most (an agent's actor, the task it runs) usually wrote or read it a
moment ago. :class:`KnownRecords` keeps the last raw value (and its parsed record) this
process wrote or read for each key, so ``Store.update`` can go straight to the write.

Why a stale entry is harmless: the write happens only if Redis still holds exactly the
expected value; otherwise it is refused (``Conflict``), the entry is forgotten, and the
change is decided again on a fresh read. A decision that *refuses* (a change function
raising) on a known value is also taken again on a fresh read before it is believed
(``Store.update``). The entries are bounded (least recently used dropped), so a town of
any size holds at most :data:`KNOWN_RECORDS` of them.
"""

from __future__ import annotations

import collections
from typing import Any

#: Record values kept per process (the agents and tasks in play; ~1 KiB each).
KNOWN_RECORDS = 4096


class KnownRecords:
    """Key -> (raw value, parsed record or None), least recently used dropped first."""

    def __init__(self, size: int = KNOWN_RECORDS) -> None:
        self._size = size
        self._entries: collections.OrderedDict[str, tuple[str, Any]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def raw(self, key: str) -> str | None:
        """The last value seen at ``key`` (None: not known)."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def record(self, key: str, cls: type) -> tuple[str, Any] | None:
        """(raw, parsed) when the value at ``key`` is known and was parsed as ``cls``;
        (raw, None) when known but not parsed as that class; None when not known."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        raw, parsed = entry
        return (raw, parsed if isinstance(parsed, cls) else None)

    def note(self, key: str, raw: str, parsed: Any = None) -> None:
        """``key`` holds ``raw`` (parsed as ``parsed``, when given) as of now."""
        self._entries[key] = (raw, parsed)
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
