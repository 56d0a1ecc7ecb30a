"""Tab completion, tested on the completer directly with documents."""

from __future__ import annotations

from typing import Any, cast

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from tinytown.model import BUILTIN_ROLES, Agent, AgentState, Task, new_id
from tinytown.repl.commands import REFUSED
from tinytown.repl.completer import ReplCompleter
from tinytown.repl.core import build_repl_parser
from tinytown.repl.snapshot import Snapshot

OPEN = Task.new("write the API docs")


@pytest.fixture(scope="module")
def completer() -> ReplCompleter:
    agents = (
        Agent(new_id(), "alice", "Dorothy", "claude", state=AgentState.IDLE),
        Agent(new_id(), "bob", "James", "claude", state=AgentState.WORKING),
    )
    clis = (("claude", "claude --print"), ("codex", "codex exec"), ("mybot", "./bot.sh"))
    snap = Snapshot(town="t", agents=agents, open_tasks=(OPEN,), clis=clis, loaded=True)
    return ReplCompleter(
        build_repl_parser(cast(Any, None)), lambda: snap, hidden=frozenset(REFUSED)
    )


def complete(completer: ReplCompleter, text: str) -> list[str]:
    document = Document(text, len(text))
    return [c.text for c in completer.get_completions(document, CompleteEvent(True))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sp", ["spawn"]),
        ("bro", ["broadcast"]),
        ("tt li", ["list"]),
        ("kill ", ["alice", "bob"]),
        ("kill a", ["alice"]),
        ("send ", ["alice", "bob", "supervisor"]),
        ("send --urgent b", ["bob"]),
        ("assign b", ["bob"]),
        ("assign bob 'do it' --parent ", [OPEN.short_id]),
        ("task show ", [OPEN.short_id]),
        ("spawn x --parent a", ["alice"]),
        ("spawn x --mode f", ["fresh", "forkedcontext"]),
        ("watch --agent ", ["alice", "bob"]),
        ("help ta", ["tasks", "task"]),
        ("help task s", ["show"]),
        ("spawn x --cli ", ["claude", "codex", "mybot"]),
        ("spawn x --cli m", ["mybot"]),
        ("spawn x -c co", ["codex"]),
        ("spawn x --role te", ["tester"]),
        ("spawn x --role ", list(BUILTIN_ROLES)),
        ("ru", []),  # 'run' is refused in the REPL, so never offered
        ("at", []),
        ("dow", []),
        ("ini", []),
        ("help ru", []),
        ("nonsense ", []),
        ("list ", []),
    ],
)
def test_completes(completer: ReplCompleter, text: str, expected: list[str]) -> None:
    assert sorted(complete(completer, text)) == sorted(expected)


def test_completes_every_command_on_an_empty_line(completer: ReplCompleter) -> None:
    names = complete(completer, "")
    for name in ("spawn", "assign", "send", "events", "broadcast", "watch", "help", "exit"):
        assert name in names


def test_completes_subcommands_and_options(completer: ReplCompleter) -> None:
    assert {"show", "complete", "fail", "cancel", "current"} <= set(complete(completer, "task "))
    assert {"--role", "--cli", "--parent", "--mode"} <= set(complete(completer, "spawn x --"))


def test_completion_replaces_the_word_being_typed(completer: ReplCompleter) -> None:
    document = Document("kill al", 7)
    (completion,) = completer.get_completions(document, CompleteEvent(True))
    assert completion.start_position == -2
    assert "Dorothy" in str(completion.display_meta)
