"""The one argparse parser of ``tt``, shared by the shell and the REPL."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn

import tinytown
from tinytown.townroot import command_word

#: Command modules in ``tinytown.cli.commands``, registered in this order, each with the
#: commands (first words of a command line, aliases included) its ``register`` adds. The
#: names let one command line build and import only its own module (:func:`parser_for`);
#: tests/cli/test_startup.py checks them against what the modules register.
COMMANDS: dict[str, tuple[str, ...]] = {
    "town": ("init", "down", "status", "towns", "config", "reset"),
    "agents": ("spawn", "list", "interrupt", "resume", "close", "kill", "restart", "wait", "prune"),
    "tasks": ("assign", "tasks", "task", "backlog"),
    "costs": ("costs", "budget"),
    "messages": ("send", "inbox", "events", "history"),
    "logs": ("logs",),
    "questions": ("reply",),
    "recovery": ("recover", "reclaim"),
    "plans": ("plan", "sync", "save", "restore", "migrate"),
    "runtime": ("run", "stop", "demo"),
    "attach": ("attach",),
    "top": ("top",),
    "mcp": ("mcp",),
    "workspace": ("diff", "merge", "rescue"),
    "completion": ("completion",),
    "doctor": ("doctor",),
}
COMMAND_MODULES = tuple(COMMANDS)
#: Modules whose handlers read the whole parser (``args.parser``: tt completion walks it).
WHOLE_PARSER = frozenset({"completion"})
#: Modules written separately that may not exist yet in a given checkout.
OPTIONAL_MODULES = frozenset({"plans", "runtime"})


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("max_help_position", 30)
        super().__init__(prog, **kwargs)


class TtParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors read ``tt: <message>`` (exit 2), and whose
    subcommands also accept ``-t/--town`` after the command name (hidden there)."""

    def __init__(self, *args: Any, top: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        if not top:
            # A command module may reuse -t for something else: its option then wins.
            kwargs.setdefault("conflict_handler", "resolve")
        super().__init__(*args, **kwargs)
        self.add_argument(
            "-t",
            "--town",
            dest="town_dir",
            metavar="DIR",
            default=None if top else argparse.SUPPRESS,
            help=(
                "the town directory (default: search upward from the current directory"
                " for tinytown.toml)"
                if top
                else argparse.SUPPRESS
            ),
        )

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # A command's options may sit between its positionals (`tt send bob --query "hi"`):
        # parse command parsers intermixed. The top parser (which has subcommands) cannot.
        if self._subparsers is None and not getattr(self, "_intermixing", False):
            self._intermixing = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._intermixing = False
        return super().parse_known_args(args, namespace)

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        """Parse, then refuse any text value that is not valid Unicode (the boundary check).

        Bytes that are not UTF-8 arrive from ``argv`` as surrogate escapes; they could not be
        written to Redis or a file later, so the command line is refused here, before any
        handler runs: one ``tt: argument NAME: ...`` line, exit 2.
        """
        parsed = super().parse_args(args, namespace)
        for dest, value in _texts(parsed):
            problem = _not_text(value)
            if problem is not None:
                owner, action = _find_action(self, parsed, dest)
                name = argparse._get_action_name(action) if action else dest.upper()
                owner.error(f"argument {name}: {problem}")
        return parsed

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"tt: {message} (see '{self.prog} --help')\n")


def _texts(namespace: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(dest, text) for every string value of a parsed namespace, in lists too."""
    for dest, value in vars(namespace).items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, str):
                yield dest, item


def _not_text(value: str) -> str | None:
    """Why ``value`` is not encodable text, or None if it is."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start]
        if 0xDC80 <= ord(bad) <= 0xDCFF:  # how Python carries a non-UTF-8 byte of argv
            return f"not valid UTF-8 text (byte 0x{ord(bad) - 0xDC00:02x})"
        return f"not valid text (character U+{ord(bad):04X})"
    return None


def _find_action(
    top: argparse.ArgumentParser, namespace: argparse.Namespace, dest: str
) -> tuple[argparse.ArgumentParser, argparse.Action | None]:
    """The parser of the command that was parsed into ``namespace`` (the one whose
    ``handler`` default it carries) and its action storing ``dest``; ``top`` if none."""
    handler = getattr(namespace, "handler", None)
    parsers = [top]
    for parser in parsers:  # breadth-first through the subcommands
        parsers.extend(command_parsers(parser).values())
    owner = next(
        (p for p in parsers if handler is not None and p._defaults.get("handler") is handler),
        top,
    )
    for parser in dict.fromkeys([owner, top]):
        for action in parser._actions:
            if action.dest == dest:
                return owner, action
    return owner, None


Registrar = Callable[[Any], None]


def build_parser(
    extra: Iterable[Registrar] = (), *, modules: Iterable[str] = COMMAND_MODULES
) -> TtParser:
    """The ``tt`` parser; each of ``extra`` is called with its subparsers action after the
    command modules (the REPL adds its own commands this way, to a private instance).
    ``modules``: the command modules to register (default all; see :func:`parser_for`)."""
    parser = TtParser(
        prog="tt",
        top=True,
        description=(
            "Tinytown: coordinate AI coding agents through Redis.\n\n"
            "Start with 'tt init', add agents with 'tt spawn NAME --cli CLI', run the town\n"
            "with 'tt run', and give work with 'tt assign AGENT \"what to do\"'."
        ),
        epilog="Run 'tt COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"tt {tinytown.__version__}")
    parser.set_defaults(parser=parser)  # for handlers that read the parser (tt completion)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in modules:
        try:
            module = importlib.import_module(f"tinytown.cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if name in OPTIONAL_MODULES and exc.name == f"tinytown.cli.commands.{name}":
                continue
            raise
        module.register(sub)
    for register in extra:
        register(sub)
    return parser


def parser_for(argv: Sequence[str]) -> TtParser:
    """The parser for one ``tt`` command line: when its command is known, only the module
    of that command is imported and registered (building the ~60 command parsers and
    importing every command module costs a one-shot command more than its work). The
    command's own parser, its help and its errors are the same as in the whole parser;
    anything else (no command, an unknown one, ``--help``, ``--version``, a command that
    reads the whole parser) gets the whole parser. After :func:`prepare`, the whole
    parser it built."""
    if _prepared:
        return _prepared[0]
    module = _MODULE_OF.get(command_word(argv) or "")
    if module is None or module in WHOLE_PARSER:
        return build_parser()
    return build_parser(modules=(module,))


_prepared: list[TtParser] = []


def prepare() -> None:
    """Build the whole parser once for every later :func:`parser_for` of this process
    and its forks (the command server: parsing leaves a parser as it was)."""
    _prepared[:] = [build_parser()]


_MODULE_OF = {word: module for module, words in COMMANDS.items() for word in words}


def command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Name -> parser of a parser's subcommands, in registration order (aliases skipped)."""
    out: dict[str, argparse.ArgumentParser] = {}
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if id(child) not in seen:
                    seen.add(id(child))
                    out[name] = child
    return out


def command_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Subcommand name -> its one-line help, in registration order."""
    out: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                out[choice.dest] = choice.help or ""
    return out
