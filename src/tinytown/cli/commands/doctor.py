"""``tt doctor``: can the agents work? Free checks of their CLIs and of the town."""

from __future__ import annotations

import argparse
from typing import Any

from tinytown.cli.context import Context
from tinytown.cli.output import add_json_flag
from tinytown.errors import RedisUnavailableError
from tinytown.services.config import TownConfig
from tinytown.services.doctor import Check, Level, Report, diagnose, diagnose_offline
from tinytown.services.doctor.probe import PROBE_TIMEOUT
from tinytown.services.town import Town, TownStoppedError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check that the agents' CLIs and the town can work (no paid call)",
        description=(
            "Check, for each agent's CLI (default: every agent not stopped, cold or in\n"
            "error; else default_cli): installed (path, version), logged in where the CLI\n"
            "can say so for free, the preset's options accepted for the current user\n"
            "(claude refuses its permission bypass as root), and the town's MCP server\n"
            "reachable by the CLI where the town wires MCP; then Redis and the runtime.\n"
            "One line per check (ok, warn, FAIL, skip), then a summary. No check reaches a\n"
            "model. Exit 1 when something blocks the agents' work."
        ),
    )
    p.add_argument("agents", nargs="*", metavar="AGENT", help="agents to check (name or id)")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=PROBE_TIMEOUT,
        metavar="SECONDS",
        help=f"how long each probe of a CLI may take (default {PROBE_TIMEOUT:g})",
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_doctor, town="none", readonly=True)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"needs a number of seconds, not {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"needs a positive number of seconds, not {text!r}")
    return value


async def cmd_doctor(ctx: Context, args: argparse.Namespace) -> int:
    report = await _examine(ctx, args)
    if ctx.json:
        ctx.out.json(report.as_dict())
    else:
        for check in report.checks:
            ctx.out.line(line_of(check))
        ctx.out.line(report.summary())
    return 1 if report.blocked else 0


def line_of(check: Check) -> str:
    """``LEVEL  subject check: sentence``; the level column is 4 wide."""
    return f"{check.level:<4}  {check.subject} {check.name}: {check.text}"


async def _examine(ctx: Context, args: argparse.Namespace) -> Report:
    """The report for the town of ``ctx``: connected (never starting a stopped embedded
    Redis: that is a finding), or from its config alone when Redis cannot be reached."""
    if ctx.town is not None:  # the REPL's town
        return await diagnose(ctx.town, args.agents, timeout=args.timeout)
    root = ctx.root()
    try:
        town = await Town.connect(root, search=False, start_server=False)
    except TownStoppedError as exc:
        problem = Check(
            "town",
            "redis",
            Level.WARN,
            f"Town {exc.town}'s Redis is stopped ('tt down'); the next command that writes"
            " starts it (agents were not read: checking default_cli).",
        )
    except RedisUnavailableError as exc:
        problem = Check("town", "redis", Level.FAIL, str(exc))
    else:
        async with town:
            return await diagnose(town, args.agents, timeout=args.timeout)
    return await diagnose_offline(TownConfig.load(root), problem, timeout=args.timeout)
