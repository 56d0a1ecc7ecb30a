"""The one argparse parser of ``tt``, shared by the shell and the REPL."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, NoReturn

import tinytown

#: Command modules in ``tinytown.cli.commands``, registered in this order.
COMMAND_MODULES = ("town", "agents", "tasks", "messages", "recovery", "plans", "runtime")
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

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"tt: {message} (see '{self.prog} --help')\n")


def build_parser() -> TtParser:
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
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"tinytown.cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if name in OPTIONAL_MODULES and exc.name == f"tinytown.cli.commands.{name}":
                continue
            raise
        module.register(sub)
    from tinytown.repl import cli as repl_cli  # `attach` lives with the REPL it opens

    repl_cli.register(sub)
    return parser


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
