"""How a round ended: ok, rate-limited, transient, not set up, or a real failure.

The patterns are the CLIs' own wording (the recorded outputs in
``shared/reference/agent-clis.md`` and the providers' documented errors); a custom CLI
adds its own (``setup_patterns`` ... in ``[agent_clis.X]``). Only a failed round's error
text is searched: the CLI's stated error, stderr, and (for text output, or a structured
one with no error text) the end of stdout, so an answer that mentions "quota" on a
successful round is never taken for a rate limit.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

import attrs

from tinytown.services.agentcli.report import Outcome, RoundReport
from tinytown.services.agentcli.resettime import retry_after
from tinytown.services.agentcli.results import Parsed

SETUP = (
    r"not logged in",
    r"please run /login",
    r"please (?:log ?in|sign ?in)",
    r"set an auth method",
    r"(?:missing|no|invalid|incorrect) (?:\w+ )?api[ _-]?key",
    r"api[ _-]?key (?:is )?(?:not set|missing|required|invalid|not valid)",
    r"authentication_error|authentication failed|unauthorized|\b401\b",
    r"credit balance is too low",
    r"cannot be used with root/sudo privileges",
    r"unknown option|unrecognized arguments?|unexpected argument|unknown argument",
    r"invalid value '[^']*' for '--",
    r"not inside a trusted directory|no prompt provided",
)
RATE_LIMIT = (
    r"\b429\b",
    r"\b529\b",
    r"rate[ _-]?limit",
    r"overloaded",
    r"quota",
    r"too many requests",
    r"usage limit",
    r"limit reached",
    r"hit your (?:usage )?limit",
    r"resource_exhausted",
)
TRANSIENT = (
    r"econnreset|econnrefused|etimedout|enotfound|eai_again|epipe",
    r"socket hang up|fetch failed|network",
    r"connection (?:reset|refused|closed|error|lost|timed out)",
    r"stream disconnected|reconnecting",
    r"timed? ?out",
    r"internal server error|bad gateway|service unavailable|gateway timeout",
    r"(?:http|status|api error|error)\W*(?:code\W*)?5\d\d\b",
)

#: A gemini ``error.code`` / claude ``api_error_status`` that settles the class.
CODES: dict[int, Outcome] = {
    41: Outcome.SETUP,  # gemini: no auth method
    401: Outcome.SETUP,
    403: Outcome.SETUP,
    429: Outcome.RATE_LIMITED,
    529: Outcome.RATE_LIMITED,
    500: Outcome.TRANSIENT,
    502: Outcome.TRANSIENT,
    503: Outcome.TRANSIENT,
    504: Outcome.TRANSIENT,
}

_MAX_MESSAGE = 300
_TAIL_LINES = 40


def compile_patterns(patterns: Iterable[str], where: str) -> tuple[re.Pattern[str], ...]:
    """Case-insensitive regexes; ValueError (one sentence, naming ``where``) if one is bad."""
    out = []
    for pattern in patterns:
        try:
            out.append(re.compile(pattern, re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"{where}: {pattern!r} is not a valid pattern ({exc})") from None
    return tuple(out)


@attrs.frozen
class Patterns:
    """The wording of each failure class for one CLI (built-ins plus its own)."""

    setup: tuple[re.Pattern[str], ...] = compile_patterns(SETUP, "setup")
    rate_limit: tuple[re.Pattern[str], ...] = compile_patterns(RATE_LIMIT, "rate limit")
    transient: tuple[re.Pattern[str], ...] = compile_patterns(TRANSIENT, "transient")

    def extended(
        self,
        setup: Sequence[re.Pattern[str]] = (),
        rate_limit: Sequence[re.Pattern[str]] = (),
        transient: Sequence[re.Pattern[str]] = (),
    ) -> Patterns:
        """These patterns with a CLI's own first (they win over the built-in ones)."""
        return Patterns(
            (*setup, *self.setup), (*rate_limit, *self.rate_limit), (*transient, *self.transient)
        )


BUILTIN = Patterns()


def one_line(text: str) -> str:
    """``text`` as one line, shortened to fit a state reason."""
    line = " ".join(text.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 1] + "…"


def _lines(parsed: Parsed, stdout: str, stderr: str) -> list[str]:
    """The failure's own words, most telling first: the CLI's stated error, then stderr,
    then the end of stdout when the output gave no error text of its own."""
    lines = parsed.error.splitlines()
    lines += stderr.splitlines()[-_TAIL_LINES:]
    if not parsed.structured or not parsed.error:
        text = parsed.answer if parsed.structured else stdout
        lines += text.splitlines()[-_TAIL_LINES:]
    return [line.strip() for line in lines if line.strip()]


def _first(patterns: Sequence[re.Pattern[str]], lines: Sequence[str]) -> str | None:
    for line in lines:
        if any(p.search(line) for p in patterns):
            return line
    return None


def classify(
    parsed: Parsed,
    returncode: int | None,
    timed_out: bool,
    stdout: str,
    stderr: str,
    patterns: Patterns = BUILTIN,
    now: dt.datetime | None = None,
) -> RoundReport:
    """The round's report from what its output said and how it ended."""

    def report(outcome: Outcome, message: str, wait: float | None = None) -> RoundReport:
        return RoundReport(
            outcome,
            parsed.answer,
            one_line(message),
            parsed.session_id,
            parsed.usage,
            wait,
        )

    if returncode == 0 and not timed_out and not parsed.is_error:
        return report(Outcome.OK, "")
    lines = _lines(parsed, stdout, stderr)
    text = "\n".join(lines)
    limited = _first(patterns.rate_limit, lines)
    if timed_out:
        if limited:
            return report(Outcome.RATE_LIMITED, limited, retry_after(text, now))
        why = _first(patterns.transient, lines)
        return report(
            Outcome.TRANSIENT, f"the round timed out: {why}" if why else "the round timed out"
        )
    by_code = CODES.get(parsed.code) if parsed.code is not None else None
    said = lines[0] if lines else f"exit {returncode}"
    setup = _first(patterns.setup, lines)
    if setup or by_code is Outcome.SETUP:
        return report(Outcome.SETUP, setup or said)
    if limited or by_code is Outcome.RATE_LIMITED:
        return report(Outcome.RATE_LIMITED, limited or said, retry_after(text, now))
    transient = _first(patterns.transient, lines)
    if transient or by_code is Outcome.TRANSIENT:
        return report(Outcome.TRANSIENT, transient or said)
    last_err = [line for line in stderr.splitlines() if line.strip()]
    if parsed.error or not last_err:
        return report(Outcome.FAILED, said if parsed.error else (lines[-1] if lines else said))
    return report(Outcome.FAILED, last_err[-1])
