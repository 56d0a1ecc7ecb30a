"""The result parsers on recorded and documented outputs: answer, session, usage, and
tolerance of unknown fields, stray lines and truncated output."""

from __future__ import annotations

from tests.services.agentcli import samples
from tinytown.model import Usage
from tinytown.services.agentcli.results import read_claude, read_codex, read_gemini, read_text


def test_claude_not_logged_in_reads_is_error_not_subtype() -> None:
    parsed = read_claude(samples.CLAUDE_NOT_LOGGED_IN)
    assert parsed.structured and parsed.is_error is True  # though subtype says success
    assert parsed.error == "Not logged in · Please run /login"
    assert parsed.session_id == "4c4b1e2a-8d51-4a0e-9a43-1f4f2d7b6c11"
    assert parsed.usage == Usage()


def test_claude_answer_session_cost_and_cached_tokens() -> None:
    parsed = read_claude(samples.CLAUDE_OK)
    assert (parsed.answer, parsed.is_error, parsed.error) == (
        "Added the endpoint and its tests.",
        False,
        "",
    )
    assert parsed.session_id == "s-1"
    assert parsed.usage == Usage(
        input_tokens=12, output_tokens=480, cached_tokens=17000, cost_usd=0.0421
    )


def test_claude_stream_json_takes_the_final_result_event() -> None:
    stream = (
        '{"type":"system","subtype":"init","session_id":"s-2","tools":[]}\n'
        '{"type":"assistant","message":{"content":[{"type":"text","text":"thinking"}]}}\n'
        '{"type":"result","subtype":"success","is_error":false,"result":"final",'
        '"session_id":"s-2","total_cost_usd":0.5,"usage":{"input_tokens":3,"output_tokens":4}}\n'
    )
    parsed = read_claude(stream)
    assert (parsed.answer, parsed.session_id, parsed.usage.cost_usd) == ("final", "s-2", 0.5)


def test_claude_garbage_around_the_object_is_skipped() -> None:
    noisy = "warning: something odd\n" + samples.CLAUDE_OK + "trailing log line\n"
    assert read_claude(noisy) == read_claude(samples.CLAUDE_OK)


def test_truncated_or_plain_output_falls_back_to_text() -> None:
    cut = samples.CLAUDE_OK[:60]
    assert read_claude(cut) == read_text(cut) and not read_claude(cut).structured
    assert read_claude(cut).answer == cut.strip()
    assert read_claude(samples.CLAUDE_NOT_LOGGED_IN_TEXT).answer == (
        "Not logged in · Please run /login"
    )
    assert read_codex("plain words\n").answer == "plain words"
    assert read_gemini('{"response": "cut').answer == '{"response": "cut'


def test_claude_error_without_result_text_names_its_errors() -> None:
    out = '{"type":"result","subtype":"error_max_turns","is_error":true,"errors":["max turns"]}'
    parsed = read_claude(out)
    assert parsed.is_error and parsed.error == "max turns" and parsed.answer == ""


def test_codex_success_keeps_the_last_agent_message_and_thread() -> None:
    parsed = read_codex(samples.CODEX_OK)
    assert parsed.answer == "Fixed the bug in a.py."
    assert parsed.session_id == "0199a213-81c0-7800-8aa1-bbab2a035a53"
    assert parsed.is_error is False
    assert parsed.usage == Usage(input_tokens=24763, output_tokens=122, cached_tokens=24448)


def test_codex_without_network_is_an_error_with_the_last_word() -> None:
    parsed = read_codex(samples.CODEX_NO_NETWORK)
    assert parsed.is_error and parsed.answer == ""
    assert parsed.session_id == "01a22a78-0dd2-7371-9fe8-129b72d84c2f"
    assert parsed.error.startswith("Reconnecting... waiting for network")


def test_codex_turn_failed() -> None:
    out = (
        '{"type":"thread.started","thread_id":"t"}\n'
        '{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized"}}\n'
    )
    parsed = read_codex(out)
    assert parsed.is_error and parsed.error == "unexpected status 401 Unauthorized"


def test_gemini_no_auth_recorded() -> None:
    parsed = read_gemini(samples.GEMINI_NO_AUTH)
    assert parsed.is_error and parsed.code == 41
    assert parsed.error.startswith("Please set an Auth method")
    assert parsed.session_id == "7d0e4a8c-2f5b-4b7e-9c1d-3e2f1a0b9c8d"


def test_gemini_response_and_tokens_summed_over_models() -> None:
    parsed = read_gemini(samples.GEMINI_OK)  # pretty-printed: one object over many lines
    assert parsed.answer == "The capital of France is Paris." and parsed.is_error is False
    assert parsed.session_id == "g-1"
    assert parsed.usage == Usage(
        input_tokens=24939 + 100, output_tokens=20 + 154 + 5, cached_tokens=21263
    )


def test_a_pretty_printed_object_after_a_warning_line() -> None:
    noisy = "Loaded cached credentials.\n" + samples.GEMINI_OK + "bye\n"
    assert read_gemini(noisy) == read_gemini(samples.GEMINI_OK)
    assert read_gemini(samples.GEMINI_OK).answer == "The capital of France is Paris."


def test_gemini_flat_stats() -> None:
    parsed = read_gemini('{"response":"ok","stats":{"inputTokens":12,"outputTokens":8}}')
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (12, 8)


def test_odd_values_are_ignored_not_trusted() -> None:
    out = (
        '{"type":"result","is_error":false,"result":7,"session_id":5,"total_cost_usd":"1",'
        '"usage":{"input_tokens":-3,"output_tokens":true}}'
    )
    parsed = read_claude(out)
    assert parsed.answer == "" and parsed.session_id is None and parsed.usage == Usage()
