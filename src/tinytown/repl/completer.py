"""Tab completion from the ``tt`` parser itself: commands, subcommands, options, choices,
agent names, the short ids of unfinished tasks, CLI presets (``--cli``) and built-in roles
(``--role``).

Runs in the prompt thread: it reads the parser (built once, never changed afterwards) and
the latest :class:`~tinytown.repl.snapshot.Snapshot` (swapped in by the trio side); it
never does I/O.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable, Iterable, Iterator

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from tinytown.cli.output import clip
from tinytown.cli.parser import command_help, command_parsers
from tinytown.model import BUILTIN_ROLES
from tinytown.repl.snapshot import Snapshot

#: Metavars whose values are agents, with whether ``supervisor`` is a valid value.
AGENT_METAVARS = {"AGENT": False, "TO": True}
TASK_METAVARS = frozenset({"TASK"})
COMMAND_METAVAR = "COMMAND"


def split_words(text: str) -> list[str]:
    """Words of a partial command line; tolerant of an unclosed quote."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


class ReplCompleter(Completer):
    """Completes a REPL line; ``snapshot`` returns the latest view of the town; ``hidden``:
    commands never offered (those the REPL refuses)."""

    def __init__(
        self,
        parser: argparse.ArgumentParser,
        snapshot: Callable[[], Snapshot],
        *,
        hidden: frozenset[str] = frozenset(),
    ) -> None:
        self.parser = parser
        self.snapshot = snapshot
        self.hidden = hidden

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        text = document.text_before_cursor
        words = split_words(text)
        current = "" if not text or text[-1].isspace() or not words else words.pop()
        if words and words[0] == "tt":
            words = words[1:]
        parser, rest = self._descend(words)
        if command_parsers(parser) and not rest:
            yield from _matching(current, self._commands(parser))
            return
        if command_parsers(parser):
            return  # an unknown command: nothing sensible to offer
        if current.startswith("-"):
            yield from _matching(current, _options(parser))
            return
        action = _pending_action(parser, rest)
        if action is not None:
            yield from _matching(current, self._values(action, rest))

    def _descend(self, words: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
        parser: argparse.ArgumentParser = self.parser
        for i, word in enumerate(words):
            child = command_parsers(parser).get(word)
            if child is None:
                return parser, words[i:]
            parser = child
        return parser, []

    def _commands(self, parser: argparse.ArgumentParser) -> Iterable[tuple[str, str]]:
        entries = command_help(parser).items()
        if parser is not self.parser:
            return entries
        return [(name, text) for name, text in entries if name not in self.hidden]

    def _values(self, action: argparse.Action, rest: list[str]) -> Iterable[tuple[str, str]]:
        if action.choices is not None and not isinstance(action.choices, dict):
            return [(str(c), "") for c in action.choices]
        snap = self.snapshot()
        if action.option_strings and action.dest == "cli":
            return [(name, clip(command, 40)) for name, command in snap.clis]
        if action.option_strings and action.dest == "role":
            return [(role, "built-in role") for role in BUILTIN_ROLES]
        metavar = str(action.metavar or action.dest).upper()
        if metavar in AGENT_METAVARS:
            agents = [(a.name, f"{a.nickname} · {a.state.value}") for a in snap.agents]
            if AGENT_METAVARS[metavar]:
                agents.append(("supervisor", "people at the REPL"))
            return agents
        if metavar in TASK_METAVARS:
            return [
                (t.short_id, f"{t.state.value}: {clip(t.description, 40)}") for t in snap.open_tasks
            ]
        if metavar == COMMAND_METAVAR:
            parser, leftover = self._descend([w for w in rest if not w.startswith("-")])
            return [] if leftover else self._commands(parser)
        return []


def _matching(current: str, candidates: Iterable[tuple[str, str]]) -> Iterator[Completion]:
    lowered = current.lower()
    seen: set[str] = set()
    for value, meta in candidates:
        if value.lower().startswith(lowered) and value not in seen:
            seen.add(value)
            yield Completion(value, start_position=-len(current), display_meta=meta)


def _options(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        for option in action.option_strings:
            if option.startswith("--"):
                yield option, action.help or ""


def _pending_action(parser: argparse.ArgumentParser, rest: list[str]) -> argparse.Action | None:
    """The action the next word is a value of: an option's argument, else a positional."""
    by_option = {o: a for a in parser._actions for o in a.option_strings}
    if rest and rest[-1] in by_option and by_option[rest[-1]].nargs != 0:
        return by_option[rest[-1]]
    positionals = [a for a in parser._actions if not a.option_strings]
    consumed = 0
    skip = False
    for word in rest:
        if skip:
            skip = False
        elif word in by_option:
            skip = by_option[word].nargs != 0
        elif not word.startswith("-"):
            consumed += 1
    for action in positionals:
        if action.nargs in ("*", "+", argparse.REMAINDER):
            return action
        consumed -= 1
        if consumed < 0:
            return action
    return None
