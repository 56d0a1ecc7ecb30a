"""Text that can be stored: every service checks free text before it writes anything."""

from __future__ import annotations

from tinytown.errors import InvalidInputError


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be written as UTF-8 (Redis, files), or None if it can."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        if 0xDC80 <= ord(bad) <= 0xDCFF:  # how Python carries a byte that is not UTF-8
            return f"is not valid UTF-8 text (byte 0x{ord(bad) - 0xDC00:02x})"
        return f"is not valid text (character U+{ord(bad):04X})"
    return None


def check_text(value: str, what: str) -> str:
    """Return ``value``, or raise InvalidInputError naming ``what`` if it is not text."""
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInputError(f"{what[0].upper()}{what[1:]} {problem}.")
    return value
