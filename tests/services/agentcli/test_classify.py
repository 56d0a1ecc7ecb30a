"""How a round ended, on the recorded outputs and the CLIs' documented failures."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.services.agentcli import samples
from tinytown.services.agentcli.classify import one_line
from tinytown.services.agentcli.report import Outcome
from tinytown.services.agentcli.resettime import retry_after
from tinytown.services.agentcli.spec import build

NOW = dt.datetime(2026, 11, 30, 13, 0, 0, tzinfo=dt.UTC)
CLAUDE = build("claude", ["claude", "--print", "--output-format", "json"])
CODEX = build("codex", ["codex", "exec", "--json", "-"])
GEMINI = build("gemini", ["gemini", "--output-format", "json"])
TEXT = build("mine", ["mine"])
NO_LOGIN = "Not logged in · Please run /login"
CODEX_401 = '{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized"}}'
CLAUDE_529 = (
    '{"type":"result","is_error":true,"api_error_status":529,"result":'
    '"API Error: 529 {\\"type\\":\\"error\\",\\"error\\":{\\"type\\":\\"overloaded_error\\"}}"}'
)
GEMINI_503 = '{"error":{"message":"upstream hiccup","code":503}}'
WAITING = "Reconnecting... waiting for network"


@pytest.mark.parametrize(
    ("spec", "code", "stdout", "stderr", "outcome", "message"),
    [
        # the recorded outputs of the reference
        (CLAUDE, 1, samples.CLAUDE_NOT_LOGGED_IN, "", "setup", NO_LOGIN),
        (TEXT, 1, samples.CLAUDE_NOT_LOGGED_IN_TEXT, "", "setup", NO_LOGIN),
        (CLAUDE, 1, "", samples.CLAUDE_ROOT, "setup", samples.CLAUDE_ROOT.strip()),
        (GEMINI, 41, samples.GEMINI_NO_AUTH, "", "setup", "Please set an Auth method in your"),
        (CODEX, 1, "", samples.CODEX_SKIP_GIT, "setup", "Not inside a trusted directory"),
        (CODEX, 2, "", samples.CODEX_BAD_ARG, "setup", "error: unexpected argument '--bogus'"),
        (TEXT, 1, "", "error: unknown option '--fast'", "setup", "error: unknown option"),
        (TEXT, 2, "", "usage: x\nx: error: unrecognized arguments: --y", "setup", "x: error:"),
        # keys and logins
        (TEXT, 1, "", "Error: Invalid API key · Please run /login", "setup", "Error: Invalid API"),
        (TEXT, 1, "", "OPENAI_API_KEY is not set; missing API key", "setup", "OPENAI_API_KEY"),
        (CLAUDE, 1, '{"type":"result","is_error":true,"result":"Credit balance is too low"}', "",
         "setup", "Credit balance is too low"),
        (CODEX, 1, CODEX_401, "", "setup", "unexpected status 401"),
        # rate limits and overload
        (CLAUDE, 1, CLAUDE_529, "", "rate_limited", "API Error: 529"),
        (TEXT, 1, "", "Error: model overloaded (529)", "rate_limited", "Error: model overloaded"),
        (TEXT, 1, "", "HTTP 429 Too Many Requests", "rate_limited", "HTTP 429"),
        (TEXT, 1, "", "You have exceeded your quota", "rate_limited", "You have exceeded"),
        (GEMINI, 1, '{"error":{"message":"Resource has been exhausted","code":429}}', "",
         "rate_limited", "Resource has been exhausted"),
        # transient
        (TEXT, 1, "", "Error: read ECONNRESET", "transient", "Error: read ECONNRESET"),
        (TEXT, 1, "", "API Error: 503 Service Unavailable", "transient", "API Error: 503"),
        (CODEX, 1, samples.CODEX_NO_NETWORK, "", "transient", WAITING),
        (GEMINI, 1, GEMINI_503, "", "transient", "upstream"),
        # real failures: the CLI's last words
        (TEXT, 3, "did half\n", "failing\n", "failed", "failing"),
        (TEXT, 1, "only stdout\nlast line\n", "", "failed", "last line"),
        (TEXT, 1, "", "", "failed", "exit 1"),
        (CLAUDE, 1, '{"type":"result","is_error":true,"result":"Tool failed: tests red"}', "",
         "failed", "Tool failed: tests red"),
        # success, even when the answer mentions what failures say
        (TEXT, 0, "hit the rate limit of the API we are building\n", "", "ok", ""),
        (CLAUDE, 0, samples.CLAUDE_OK, "", "ok", ""),
    ],
)  # fmt: skip
def test_classification(spec, code, stdout, stderr, outcome, message) -> None:  # type: ignore[no-untyped-def]
    report = spec.read(code, False, stdout, stderr, now=NOW)
    assert report.outcome is Outcome(outcome), report
    assert report.message.startswith(message), report
    assert "\n" not in report.message


def test_is_error_with_exit_zero_is_still_a_failure() -> None:
    report = CLAUDE.read(0, False, samples.CLAUDE_NOT_LOGGED_IN, "")
    assert report.outcome is Outcome.SETUP


def test_a_round_that_timed_out_is_transient_or_rate_limited() -> None:
    stuck = CODEX.read(None, True, samples.CODEX_NO_NETWORK, "")
    assert stuck.outcome is Outcome.TRANSIENT
    assert stuck.message.startswith("the round timed out: Reconnecting... waiting for network")
    assert TEXT.read(None, True, "working...\n", "").message == "the round timed out"
    limited = TEXT.read(None, True, "", "429 rate limited, retrying in 30s")
    assert limited.outcome is Outcome.RATE_LIMITED and limited.retry_after == 30


def test_failed_reports_keep_session_usage_and_answer() -> None:
    report = CLAUDE.read(1, False, samples.CLAUDE_NOT_LOGGED_IN, "")
    assert report.session_id == "4c4b1e2a-8d51-4a0e-9a43-1f4f2d7b6c11"
    ok = CODEX.read(0, False, samples.CODEX_OK, "")
    assert ok.ok and ok.answer == "Fixed the bug in a.py." and ok.usage.output_tokens == 122


def test_custom_patterns_win() -> None:
    spec = build(
        "mine",
        ["mine"],
        {"setup_patterns": ["^license expired"], "rate_limit_patterns": ["slow down"]},
    )
    assert spec.read(1, False, "", "License expired (429)").outcome is Outcome.SETUP
    assert spec.read(1, False, "", "please slow down").outcome is Outcome.RATE_LIMITED
    assert TEXT.read(1, False, "", "please slow down").outcome is Outcome.FAILED


def test_messages_are_one_short_line() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    long = one_line("x" * 1000)
    assert len(long) == 300 and long.endswith("…")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("Rate limited. Please try again in 20s.", 20),
        ("try again in 1m30s", 90),
        ("or try again in 4 days 21 hours 44 minutes.", 4 * 86400 + 21 * 3600 + 44 * 60),
        ("Please retry in 37.5s.", 37.5),
        ("retrying after 250ms", 0.25),
        ("limit resets in 2 hours", 7200),
        ("retry-after: 12", 12),
        ('"retry_after": 7', 7),
        (f"Claude AI usage limit reached|{int(NOW.timestamp()) + 3600}", 3600),
        ("resets at 2026-11-30T15:30:00Z", 2.5 * 3600),
        ("resets at 2026-11-30T15:30:00+01:00", 1.5 * 3600),
        ("5-hour limit reached ∙ resets 3pm (UTC)", 2 * 3600),
        ("You've hit your limit · resets 2:30pm (Europe/Paris)", 0.5 * 3600),
        ("try again at 12:30 PM (UTC)", 23.5 * 3600),  # passed today: tomorrow's
        ("resets at 14:05 (UTC)", 3900),
        ("Claude AI usage limit reached|1000000000", 0),  # already past
        ("rate limited", None),
        ("retry 3 times", None),
        ("resets at 25:99 (UTC)", None),
    ],
)
def test_reset_times(text: str, seconds: float | None) -> None:
    assert retry_after(text, NOW) == seconds


def test_reset_clock_times_without_a_zone_are_local() -> None:
    local_now = NOW.astimezone()
    target = (local_now + dt.timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    hour = target.hour % 12 or 12
    meridiem = "am" if target.hour < 12 else "pm"
    wait = retry_after(f"resets {hour}{meridiem}", NOW)
    assert wait == (target - local_now).total_seconds()
