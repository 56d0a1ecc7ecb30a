"""Cost commands: ``costs`` (what the rounds cost) and ``budget show|set`` (the limits)."""

from __future__ import annotations

import argparse
from typing import Any

from tinytown.cli.context import Context, UsageError
from tinytown.cli.output import add_json_flag, clip, record
from tinytown.errors import InvalidInputError
from tinytown.model import Agent, Budget, Usage
from tinytown.services.costs import (
    KEEP,
    Budgets,
    CostReport,
    CostRow,
    Scope,
    describe_budget,
    describe_usage,
    format_usd,
    parse_tokens,
    parse_usd,
)

AGENT_HELP = "agent name, nickname, id or id prefix"
COST_HEADERS = ["ROUNDS", "INPUT", "OUTPUT", "CACHED", "COST", "TIME"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "costs",
        help="what the agents' rounds cost (tokens, dollars)",
        description=(
            "A table of what the rounds cost, as the CLIs reported it: per agent (default)\n"
            "or per task, with a total row. CLIs that report no usage count as zero; the\n"
            "town's total also counts agents removed since (tt prune). docs/costs.md."
        ),
    )
    p.add_argument(
        "--by",
        choices=["agent", "task"],
        default="agent",
        help="one row per agent (default) or per task that cost anything",
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_costs, town="required", readonly=True)

    budget = sub.add_parser(
        "budget",
        help="show or set spending limits",
        description=(
            "Spending limits in dollars and/or tokens: an agent's own (tt spawn --budget),\n"
            "and the [budget] defaults of tinytown.toml for each agent, each task and the\n"
            "whole town. An agent that reaches one finishes its round and is paused\n"
            "(reason 'budget'); raising the limit does not resume it: tt resume NAME does.\n"
            "Without a command: show them (as 'tt budget show')."
        ),
    )
    add_json_flag(budget)
    budget.set_defaults(handler=cmd_budget_show, town="required", readonly=True)
    verbs = budget.add_subparsers(title="commands", metavar="COMMAND", required=False)
    p = verbs.add_parser(
        "show",
        help="show every limit and what was spent",
        description="Show the town's limits, the agents' own, and what was spent.",
    )
    add_json_flag(p)
    p.set_defaults(handler=cmd_budget_show, town="required", readonly=True)
    p = verbs.add_parser(
        "set",
        help="set a limit (an agent's own, or the default for agents, tasks, the town)",
        usage="tt budget set [AGENT | --town | --task] [--usd X] [--tokens N]",
        description=(
            "Set a spending limit; 'none' removes one, an option not given stays.\n"
            "  tt budget set alice --usd 10     alice's own limit (besides the defaults)\n"
            "  tt budget set --usd 5            the default for each agent\n"
            "  tt budget set --task --tokens 200k   the default for each task\n"
            "  tt budget set --town --usd 50    the whole town's total\n"
            "The defaults are written to [budget] in tinytown.toml (comments kept).\n"
            "An agent paused for spending stays paused: resume it with tt resume NAME."
        ),
    )
    p.add_argument("agent", nargs="?", metavar="AGENT", help=AGENT_HELP)
    where = p.add_mutually_exclusive_group()
    # dest: "town" is the command's own setting (which town to connect).
    where.add_argument(
        "--town", dest="whole_town", action="store_true", help="the limit on the town's total"
    )
    where.add_argument(
        "--task", dest="each_task", action="store_true", help="the default limit for each task"
    )
    p.add_argument("--usd", metavar="X", help="dollars (e.g. 5, 2.50, $5), or 'none'")
    p.add_argument("--tokens", metavar="N", help="tokens (e.g. 200000, 200k, 1.5M), or 'none'")
    add_json_flag(p)
    p.set_defaults(handler=cmd_budget_set, town="required")


# -- formatting ------------------------------------------------------------------------------


def _usage_cells(usage: Usage) -> list[object]:
    return [
        usage.rounds,
        f"{usage.input_tokens:,}",
        f"{usage.output_tokens:,}",
        f"{usage.cached_tokens:,}",
        format_usd(usage.cost_usd),
        f"{usage.duration:.1f}s",
    ]


def _row(report: CostReport, row: CostRow) -> list[object]:
    if report.by == "agent":
        return [row.name, row.state, *_usage_cells(row.usage)]
    return [row.name, row.agent, row.state, *_usage_cells(row.usage), clip(row.description, 40)]


def _report_json(report: CostReport) -> dict[str, Any]:
    rows = []
    for row in report.rows:
        entry: dict[str, Any] = {"id": row.id, "name": row.name, "state": row.state}
        if report.by == "agent":
            entry["budget"] = record(row.budget) if row.budget else None
        else:
            entry["agent"] = row.agent
            entry["description"] = row.description
        rows.append({**entry, "usage": record(row.usage)})
    return {
        "by": report.by,
        "rows": rows,
        "total": record(report.total),
        "town": record(report.town),
        "town_budget": record(report.town_budget) if report.town_budget else None,
    }


# -- handlers --------------------------------------------------------------------------------


async def cmd_costs(ctx: Context, args: argparse.Namespace) -> int:
    report = await ctx.need_town().costs(by=args.by)
    if ctx.json:
        ctx.out.json(_report_json(report))
        return 0
    if not report.rows:
        what = "agents" if report.by == "agent" else "tasks that cost anything"
        ctx.out.line(f"No {what} yet.")
    else:
        first = ["AGENT", "STATE"] if report.by == "agent" else ["TASK", "AGENT", "STATE"]
        last = [] if report.by == "agent" else ["DESCRIPTION"]
        rows = [_row(report, r) for r in report.rows]
        blank = [""] * (len(first) - 1)
        rows.append(["TOTAL", *blank, *_usage_cells(report.total), *([""] * len(last))])
        ctx.out.table(rows, [*first, *COST_HEADERS, *last])
    if report.town != report.total:  # removed agents, or tasks that cost nothing
        ctx.out.line(f"Town total: {describe_usage(report.town)}.")
    if report.town_budget:
        ctx.out.line(f"Town budget: {describe_budget(report.town_budget)}.")
    return 0


def _budgets_json(budgets: Budgets) -> dict[str, Any]:
    def limit(budget: Budget | None) -> Any:
        return record(budget) if budget else None

    return {
        "town": limit(budgets.town),
        "each_agent": limit(budgets.agent),
        "each_task": limit(budgets.task),
        "agents": [
            {"name": a.name, "id": a.id, "budget": limit(a.budget), "usage": record(a.usage)}
            for a in budgets.own
        ],
        "spent": record(budgets.spent),
    }


async def cmd_budget_show(ctx: Context, args: argparse.Namespace) -> int:
    budgets = await ctx.need_town().budgets()
    if ctx.json:
        ctx.out.json(_budgets_json(budgets))
        return 0
    out = ctx.out
    out.line(f"Town:       {describe_budget(budgets.town)}; spent {describe_usage(budgets.spent)}")
    out.line(f"Each agent: {describe_budget(budgets.agent)}")
    out.line(f"Each task:  {describe_budget(budgets.task)}")
    if budgets.own:
        out.line("Agents' own limits (besides the defaults):")
        rows = [[a.name, describe_budget(a.budget), describe_usage(a.usage)] for a in budgets.own]
        out.table(rows, ["AGENT", "BUDGET", "SPENT"])
    return 0


def _amount(text: str | None, parse: Any, option: str) -> Any:
    if text is None:
        return KEEP
    try:
        return parse(text)
    except InvalidInputError as exc:
        raise UsageError(f"{option}: {exc}") from None


async def cmd_budget_set(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    if args.agent is not None and (args.whole_town or args.each_task):
        raise UsageError("Give AGENT, --town or --task, not more than one.")
    if args.usd is None and args.tokens is None:
        raise UsageError("Give --usd X, --tokens N, or both ('none' removes a limit).")
    usd = _amount(args.usd, parse_usd, "--usd")
    tokens = _amount(args.tokens, parse_tokens, "--tokens")
    if args.agent is not None:
        agent = await town.set_budget(args.agent, usd=usd, tokens=tokens)
        assert isinstance(agent, Agent)
        paused = await town.spending.paused_for_budget(agent.id)
        if ctx.json:
            ctx.out.json({**record(agent), "paused_for_budget": bool(paused)})
            return 0
        ctx.out.line(f"Budget of {agent.name}: {describe_budget(agent.budget)}.")
    else:
        scope: Scope = "town" if args.whole_town else "task" if args.each_task else "agent"
        new = await town.set_budget(usd=usd, tokens=tokens, scope=scope)
        paused = await town.spending.paused_for_budget()
        what = {"agent": "each agent", "task": "each task", "town": "the town"}[scope]
        if ctx.json:
            ctx.out.json(
                {
                    "scope": scope,
                    "budget": record(new) if new else None,
                    "paused_for_budget": [a.name for a in paused],
                }
            )
            return 0
        limit = describe_budget(new if isinstance(new, Budget) else None)
        ctx.out.line(f"Budget of {what}: {limit} (tinytown.toml [budget]).")
    for agent in paused:
        ctx.out.line(
            f"{agent.name} is paused ({agent.state_reason}); resume it with"
            f" 'tt resume {agent.name}'."
        )
    return 0
