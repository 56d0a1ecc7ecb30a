"""`tt reply`: answering questions agents ask the supervisor."""

from __future__ import annotations

import json

from tests.conftest import TtRunner


def test_reply_answers_a_question_with_a_correlated_message(tt: TtRunner) -> None:
    assert tt("spawn", "asker").returncode == 0
    sent = tt("send", "supervisor", "--query", "which db?", "--from", "asker", "--json")
    question = json.loads(sent.stdout)["id"]
    listed = tt("reply")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith(f"{question[:8]}  ")
    assert listed.stdout.splitlines()[0].endswith("from asker: which db?")
    done = tt("reply", question[:5], "postgres")
    assert done.returncode == 0, done.stderr
    inbox = json.loads(tt("inbox", "asker", "--json").stdout)
    replies = inbox["asker"]["queued"]
    (reply,) = [m for m in replies if m.get("correlation_id") == question]
    expected = f"Replied to asker (question {question[:8]}, message {reply['id'][:8]}).\n"
    assert done.stdout == expected
    assert reply["type"] == "informational"
    assert tt("reply").stdout == "No questions waiting.\n"


def test_reply_errors_are_one_line(tt: TtRunner) -> None:
    assert tt("spawn", "asker").returncode == 0
    for args, code, err in (
        (("zz", "x"), 1, "tt: 'zz' is not a message id (give the id, or 4 or more of its"),
        (("abcdef12", "x"), 1, "tt: No message abcdef12 in the supervisor's mail."),
        (("abcdef12",), 2, 'tt: Give the answer too: tt reply MESSAGE_ID "text".'),
    ):
        result = tt("reply", *args)
        assert (result.returncode, result.stdout) == (code, ""), result
        assert result.stderr.startswith(err) and result.stderr.count("\n") == 1, result.stderr


def test_status_shows_questions_waiting_until_answered(tt: TtRunner) -> None:
    assert tt("spawn", "asker").returncode == 0
    assert "Questions waiting" not in tt("status").stdout
    ids = []
    for text in ("which db?", "which port?"):
        sent = tt("send", "supervisor", "--query", text, "--from", "asker", "--json")
        ids.append(json.loads(sent.stdout)["id"])
    status = tt("status")
    assert status.returncode == 0, status.stderr
    line = f'Questions waiting: 2 (tt reply ID "answer"; ID: {ids[0][:8]}, {ids[1][:8]})'
    assert line in status.stdout.splitlines()
    assert json.loads(tt("status", "--json").stdout)["questions_waiting"] == ids
    assert tt("reply", ids[0], "postgres").returncode == 0
    after = tt("status").stdout.splitlines()
    assert f'Questions waiting: 1 (tt reply ID "answer"; ID: {ids[1][:8]})' in after
