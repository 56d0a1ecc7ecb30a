"""Reading what a CLI printed: one small parser per format.

Each parser is tolerant: unknown fields are ignored, lines that are not JSON (a warning
before the object, a log line after it) are skipped, and output with no usable JSON at all
(a truncated object, a CLI that printed plain text) falls back to the text reading. None
of them decides whether the round failed: that is :mod:`classify`'s job, from the
:class:`Parsed` facts and the exit status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from tinytown.model import Usage


@attrs.frozen
class Parsed:
    """The facts a CLI's output states about its round.

    ``structured``: a result in the CLI's format was found (else this is the text
    reading). ``is_error``: the CLI said the round failed (None: it did not say).
    ``error``: its own words about a failure; ``code``: its error code, if it gave one."""

    answer: str
    structured: bool = False
    is_error: bool | None = None
    error: str = ""
    code: int | None = None
    session_id: str | None = None
    usage: Usage = attrs.field(factory=Usage)


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of ``text`` that start a line (one per line, as JSONL, or spread
    over several lines, as a pretty-printed result); anything else is skipped."""
    decoder = json.JSONDecoder()
    offset = 0  # where the current line starts in ``text``
    done = 0  # where the last object found ends: lines inside it are not looked at
    for line in text.splitlines(keepends=True):
        start, offset = offset, offset + len(line)
        stripped = line.lstrip()
        if start < done or not stripped.startswith("{"):
            continue
        try:
            value, done = decoder.raw_decode(text, start + len(line) - len(stripped))
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 0.0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def read_text(stdout: str, stderr: str = "") -> Parsed:
    """Plain text: the answer is what the CLI printed."""
    return Parsed(answer=stdout.strip())


def read_claude(stdout: str, stderr: str = "") -> Parsed:
    """``claude --print --output-format json`` (one ``result`` object) or ``stream-json``
    (events, the last being the ``result``). ``is_error`` says whether it failed, not
    ``subtype``: a not-logged-in round reports ``subtype: "success"`` with ``is_error:
    true``. ``cached`` tokens are the cache reads and writes, which claude does not count
    in ``input_tokens``."""
    result = None
    session_id = None
    for obj in json_objects(stdout):
        session_id = _str(obj.get("session_id")) or session_id
        if obj.get("type") == "result" or ("result" in obj and "is_error" in obj):
            result = obj
    if result is None:
        return attrs.evolve(read_text(stdout), session_id=session_id)
    usage = _dict(result.get("usage"))
    answer = result.get("result")
    answer = answer if isinstance(answer, str) else ""
    is_error = result.get("is_error") is True
    errors = result.get("errors")  # error subtypes (max turns...) list their reasons
    error = answer
    if is_error and not error and isinstance(errors, list):
        error = "; ".join(str(e) for e in errors)
    return Parsed(
        answer=answer.strip(),
        structured=True,
        is_error=is_error,
        error=error.strip() if is_error else "",
        code=_int(result.get("api_error_status")) or None,
        session_id=_str(result.get("session_id")) or session_id,
        usage=Usage(
            input_tokens=_int(usage.get("input_tokens")),
            output_tokens=_int(usage.get("output_tokens")),
            cached_tokens=_int(usage.get("cache_read_input_tokens"))
            + _int(usage.get("cache_creation_input_tokens")),
            cost_usd=_float(result.get("total_cost_usd")),
        ),
    )


def read_codex(stdout: str, stderr: str = "") -> Parsed:
    """``codex exec --json`` events: ``thread.started`` names the session,
    ``item.completed`` with an ``agent_message`` carries the answer (the last one is
    kept), each ``turn.completed`` adds its usage; ``error``, ``turn.failed`` and error
    items say what went wrong (the last word is kept)."""
    found = False
    session_id = None
    answer = ""
    error = ""
    failed = False
    completed = False
    tokens = [0, 0, 0]
    for event in json_objects(stdout):
        kind = event.get("type")
        if not isinstance(kind, str):
            continue
        found = True
        if kind == "thread.started":
            session_id = _str(event.get("thread_id")) or session_id
        elif kind == "item.completed":
            item = _dict(event.get("item"))
            if item.get("type") in ("agent_message", "assistant_message"):
                answer = _str(item.get("text")) or answer
            elif item.get("type") == "error":
                error = _str(item.get("message")) or error
        elif kind == "turn.completed":
            completed = True
            usage = _dict(event.get("usage"))
            tokens[0] += _int(usage.get("input_tokens"))
            tokens[1] += _int(usage.get("output_tokens"))
            tokens[2] += _int(usage.get("cached_input_tokens"))
        elif kind == "turn.failed":
            failed = True
            error = _str(_dict(event.get("error")).get("message")) or error
        elif kind == "error":
            error = _str(event.get("message")) or error
    if not found:
        return read_text(stdout)
    return Parsed(
        answer=answer.strip(),
        structured=True,
        is_error=failed or (not completed and bool(error)),
        error=error.strip(),
        session_id=session_id,
        usage=Usage(input_tokens=tokens[0], output_tokens=tokens[1], cached_tokens=tokens[2]),
    )


def read_gemini(stdout: str, stderr: str = "") -> Parsed:
    """``gemini --output-format json``: ``response``, ``stats`` (token counts per model,
    summed), ``session_id``, and ``error`` {type, message, code} when it failed."""
    result = None
    for obj in json_objects(stdout):
        if any(key in obj for key in ("response", "error", "stats")):
            result = obj
    if result is None:  # gemini 0.61 prints its error object on stderr (stdout empty)
        result = next((obj for obj in json_objects(stderr) if "error" in obj), None)
    if result is None:
        return read_text(stdout)
    error = _dict(result.get("error"))
    answer = result.get("response")
    inp = out = cached = 0
    stats = _dict(result.get("stats"))
    for model in _dict(stats.get("models")).values():
        tokens = _dict(_dict(model).get("tokens"))
        inp += _int(tokens.get("prompt"))
        out += _int(tokens.get("candidates")) + _int(tokens.get("thoughts"))
        cached += _int(tokens.get("cached"))
    if not (inp or out):  # an older, flat form of the stats
        inp, out = _int(stats.get("inputTokens")), _int(stats.get("outputTokens"))
    code = error.get("code")
    return Parsed(
        answer=answer.strip() if isinstance(answer, str) else "",
        structured=True,
        is_error=bool(error),
        error=(_str(error.get("message")) or (str(error) if error else "")).strip(),
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        session_id=_str(result.get("session_id")),
        usage=Usage(input_tokens=inp, output_tokens=out, cached_tokens=cached),
    )


READERS: dict[str, Callable[[str, str], Parsed]] = {
    "claude-json": read_claude,
    "codex-jsonl": read_codex,
    "gemini-json": read_gemini,
    "text": read_text,
}
