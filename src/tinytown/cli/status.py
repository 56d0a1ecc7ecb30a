"""``tt status``: the town at a glance (``--tasks`` and ``--deep`` add detail)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinytown.cli.context import Context
from tinytown.cli.output import (
    ago_seconds,
    clip,
    color_enabled,
    duration,
    paint,
    plural,
    record,
    rough,
    short,
    table_lines,
    terminal_width,
)
from tinytown.errors import TinytownError
from tinytown.model import Agent, AgentState, Budget, Task, TaskState, Usage, converter
from tinytown.model.ids import age_seconds
from tinytown.services.costs import (
    describe_budget,
    describe_usage,
    format_tokens,
    format_usd,
    spending_paused,
)
from tinytown.services.endpoint import redis_url
from tinytown.services.town import Town
from tinytown.store import indexes, oneshot
from tinytown.store.client import in_trio

if TYPE_CHECKING:
    from tinytown.services.workspace.worktrees import WorkState

#: What the STATE column says of an agent recorded as live when no runtime hosts the town.
NOT_HOSTED = "not running (no runtime)"
#: Colours of the STATE column (on a terminal, without NO_COLOR).
STATE_STYLES = {
    AgentState.WORKING: "green",
    AgentState.IDLE: "cyan",
    AgentState.STARTING: "yellow",
    AgentState.PAUSED: "yellow",
    AgentState.DRAINING: "yellow",
    AgentState.ERROR: "red",
    AgentState.STOPPED: "dim",
    AgentState.COLD: "dim",
}
AGENT_HEADERS = ["NAME", "NICKNAME", "ROLE", "STATE", "TASK", "DOING", "INBOX"]
#: Added when any agent has a worktree: ``ahead N, dirty M files``.
WORKTREE_HEADER = "WORKTREE"
#: Added when any agent has spent something (tokens or dollars).
COST_HEADERS = ["TOKENS", "COST"]
#: The longest state reason the STATE column shows (``--deep`` shows it whole).
REASON_WIDTH = 60
#: Reasons that say an agent waits on the town rather than works (runtime spellings).
RATE_LIMITED = "rate limit"
WAITING_FOR_SLOT = "waiting for a slot"
#: Columns given up first when the table is wider than the terminal: DOING, NICKNAME,
#: ROLE, NAME, STATE.
AGENT_SHRINK = (5, 1, 2, 0, 3)
#: The same with the WORKTREE column (index 7), given up right after DOING.
AGENT_SHRINK_WORKTREE = (5, 7, 1, 2, 0, 3)
#: Worktrees read at once (each costs four short git processes).
GIT_PARALLEL = 8

#: Lines of ``.tt/logs/<agent>.log`` shown by ``status --deep``.
LOG_TAIL_LINES = 5
_LOG_TAIL_BYTES = 8192


def log_tail(root: Path, agent_name: str, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last lines of an agent's log file (empty when there is none)."""
    path = root / ".tt" / "logs" / f"{agent_name}.log"
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(fh.tell() - _LOG_TAIL_BYTES, 0))
            text = fh.read().decode(errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


def _uptime(agent: Agent) -> float | None:
    if agent.state.terminal or not agent.started_at:
        return None
    return age_seconds(agent.started_at)


async def worktree_states(town: Town, agents: list[Agent]) -> dict[str, WorkState | str]:
    """Agent id -> its branch against the base (:class:`WorkState`), or the sentence
    saying why git could not tell, for the agents with a worktree; read concurrently
    (:data:`GIT_PARALLEL` at a time). Agents without a worktree cost nothing: a town
    without any runs no git and needs no event loop. Cancellation: propagates, after
    the git processes running were killed and reaped."""
    with_tree = [a for a in agents if a.worktree]
    if not with_tree:
        return {}
    if not in_trio():  # git needs the event loop: store/oneshot.py runs us again in one
        raise RuntimeError(f"worktree states {oneshot.NEEDS_TRIO}")
    # Only here: see above (a one-shot command starts without trio; git.py needs it).
    import trio

    from tinytown.services.workspace import worktrees

    found: dict[str, WorkState | str] = {}
    limit = trio.CapacityLimiter(GIT_PARALLEL)

    async def read(agent: Agent) -> None:
        async with limit:
            try:
                state = await worktrees.state(town.config, agent)
            except TinytownError as exc:
                found[agent.id] = str(exc)
            else:
                found[agent.id] = state if state is not None else "no branch recorded"

    async with trio.open_nursery() as nursery:
        for agent in with_tree:
            nursery.start_soon(read, agent)
    return found


def _workspace_record(state: WorkState | str | None) -> dict[str, Any] | None:
    """The ``workspace`` field of ``--json``."""
    if state is None:
        return None
    if isinstance(state, str):
        return {"error": state}
    return {
        "base": state.base,
        "ahead": state.ahead,
        "dirty": len(state.dirty),
        "missing": state.missing,
    }


def worktree_cell(state: WorkState | str | None) -> str | None:
    """The WORKTREE column: ``ahead 1, dirty 2 files`` (``?`` when git could not tell;
    ``--deep`` says why)."""
    if state is None:
        return None
    return "?" if isinstance(state, str) else state.describe()


async def _gather(ctx: Context, town: Town, args: argparse.Namespace) -> dict[str, Any]:
    holder = await town.runtime()
    agents = await town.agents.list()
    tasks = await town.tasks.list()
    backlog = await indexes.backlog_length(town.store)
    counts = await ctx.inbox_counts(a.id for a in agents)
    # The limits and the total, not town.budgets(): that lists every agent again (for
    # their own budgets, which the records read above carry).
    spent = await town.usage()
    town_limit = town.spending.default_budget("town")
    agent_default = town.spending.default_budget("agent")
    work = await worktree_states(town, agents)
    beats: dict[str, str] = {}
    if args.deep:  # the runtime beats in a hash; records are refreshed about once a minute
        # The fresher of the two is recovery's rule; its module only for --deep.
        from tinytown.services.recovery import heartbeat_age

        beats = await indexes.heartbeats(town.store, [a.id for a in agents])
    data: dict[str, Any] = {
        "town": town.name,
        "root": str(town.root),
        "redis": town.store.describe(),
        "redis_kind": "external" if redis_url(town.config) else "embedded",
        "runtime": None
        if holder is None
        else {"host": holder.host, "pid": holder.pid, "started_at": holder.started_at},
        "agents": [],
        "tasks": dict(Counter(t.state.value for t in tasks)),
        "backlog": backlog,
        "questions_waiting": [m.id for m in await town.messages.questions_waiting()],
        "usage": record(spent),
        "budget": record(town_limit) if town_limit else None,
    }
    by_id = {t.id: t for t in tasks}
    for agent in agents:
        # The record's own fields only for --json: the text table reads the Agent itself
        # (unstructuring 10,000 records would cost ~0.1 s for nothing).
        entry = record(agent) if ctx.json else {}
        entry["inbox"], entry["inflight"] = counts[agent.id]
        live = live_task(agent, by_id)
        entry["hosted"] = holder is not None or agent.state.terminal
        entry["current_task_live"] = live.id if live else None
        entry["state_shown"] = state_shown(agent, live, hosted=entry["hosted"])
        entry["workspace"] = _workspace_record(work.get(agent.id))
        if args.deep:
            entry["uptime_seconds"] = _uptime(agent)
            entry["heartbeat_age_seconds"] = heartbeat_age(agent, beats.get(agent.id))
            entry["log_tail"] = log_tail(town.root, agent.name)
            entry["budget_default"] = record(agent_default) if agent_default else None
            entry["worktree_summary"] = _summary(agent, work.get(agent.id))
        data["agents"].append(entry)
    if args.tasks:
        data["tasks_by_agent"] = _by_agent(tasks, {a.id: a.name for a in agents})
    data["_objects"] = (agents, by_id, work)
    return data


def _summary(agent: Agent, state: WorkState | str | None) -> str | None:
    """``--deep``'s worktree line (as ``town.workspaces.summary`` says it), from the state
    already read."""
    if state is None:
        return None
    said = state if isinstance(state, str) else state.describe()
    return f"{agent.worktree} on {agent.branch}: {said}"


def live_task(agent: Agent, tasks: dict[str, Task]) -> Task | None:
    """The agent's current task if it is still its own and unfinished; else None (a
    record left behind, e.g. by a killed agent whose task another agent completed)."""
    task = tasks.get(agent.current_task or "")
    if task is None or task.assigned_to != agent.id or task.state.terminal:
        return None
    return task


def state_shown(agent: Agent, task: Task | None, *, hosted: bool, why: bool = True) -> str:
    """The STATE column: the state, how long a task has been worked on, or that no
    runtime hosts the agent (its recorded starting/idle/working state is not live); then
    why, when the record says (``paused (budget: agent limit $5.00 of $5.00)``,
    ``idle (rate limit: claude until 12:03:10)``, ``idle (waiting for a slot)``)."""
    if not hosted:
        return NOT_HOSTED
    shown = agent.state.value
    if agent.state is AgentState.WORKING and task is not None and task.started_at:
        age = age_seconds(task.started_at)
        if age is not None:
            shown = f"working {rough(age)}"
    if why and agent.state_reason:
        shown += f" ({clip(agent.state_reason, REASON_WIDTH)})"
    return shown


def agent_table(
    agents: list[Agent],
    entries: list[dict[str, Any]],
    tasks: dict[str, Task],
    *,
    width: int | None = None,
    color: bool = False,
    work: dict[str, WorkState | str] | None = None,
) -> list[str]:
    """The agents as a table, cut to ``width`` (DOING first) and coloured on request;
    with a WORKTREE column when ``work`` (see :func:`worktree_states`) has any agent."""
    rows: list[list[object]] = []
    styles: dict[tuple[int, int], str] = {}
    costs = any(not a.usage.empty for a in agents)
    work = work or {}
    for n, (agent, entry) in enumerate(zip(agents, entries, strict=True)):
        task = tasks.get(entry["current_task_live"] or "")
        row: list[object] = [
            agent.name,
            agent.nickname,
            agent.role_id,
            entry["state_shown"],
            short(task.id) if task else None,
            clip(task.description, 200) if task else None,
            entry["inbox"],
        ]
        if work:
            row.append(worktree_cell(work.get(agent.id)))
        if costs:
            row += [format_tokens(agent.usage.tokens), format_usd(agent.usage.cost_usd)]
        rows.append(row)
        style = STATE_STYLES.get(agent.state) if entry["hosted"] else "dim"
        if color and style:
            styles[(n, 3)] = style
    headers = AGENT_HEADERS + ([WORKTREE_HEADER] if work else [])
    headers += COST_HEADERS if costs else []
    shrink = AGENT_SHRINK_WORKTREE if work else AGENT_SHRINK
    return table_lines(rows, headers, width=width, shrink=shrink, styles=styles, middle=(0, 1))


def _by_agent(tasks: list[Task], names: dict[str, str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for task in tasks:
        agent_id = task.assigned_to
        who = names.get(agent_id, short(agent_id)) if agent_id else "(unassigned)"
        row = out.setdefault(who, {})
        row[task.state.value] = row.get(task.state.value, 0) + 1
    return out


def _task_summary(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "none"
    parts = [f"{counts[s.value]} {s.value}" for s in TaskState if counts.get(s.value)]
    return f"{total} ({', '.join(parts)})"


async def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    town = ctx.need_town()
    data = await _gather(ctx, town, args)
    agents, by_id, work = data.pop("_objects")
    if ctx.json:
        ctx.out.json(data)
        return 0
    out = ctx.out
    out.line(f"Town:    {data['town']}")
    out.line(f"Root:    {data['root']}")
    out.line(f"Redis:   {data['redis']} ({data['redis_kind']})")
    runtime = data["runtime"]
    color = color_enabled(out.stdout)
    if runtime:
        up = age_seconds(runtime["started_at"])
        since = f", up {rough(up)}" if up is not None else ""
        out.line(
            f"Runtime: {paint('running', 'green' if color else None)},"
            f" pid {runtime['pid']} on {runtime['host']}{since}"
        )
    else:
        out.line(f"Runtime: {paint('not running', 'yellow' if color else None)}"
                 " (start it with 'tt run')")  # fmt: skip
    out.line()
    if not agents:
        out.line("Agents:  none (add one with 'tt spawn NAME')")
    else:
        unhosted = sum(1 for e in data["agents"] if not e["hosted"])
        note = f"; {unhosted} not running: no runtime hosts them" if unhosted else ""
        out.line(f"Agents ({len(agents)}{note}):")
        width = terminal_width(out.stdout)
        table = agent_table(agents, data["agents"], by_id, width=width, color=color, work=work)
        out.line("\n".join(table))  # one write, not one flushed write per agent
    out.line()
    out.line(f"Tasks:   {_task_summary(data['tasks'])}")
    out.line(f"Backlog: {plural(data['backlog'], 'task')}")
    _print_spending(ctx, agents, data)
    if data["questions_waiting"]:  # agents wait for a person: say how to answer
        ids = ", ".join(q[:8] for q in data["questions_waiting"][:5])
        more = ", …" if len(data["questions_waiting"]) > 5 else ""
        out.line(
            f"Questions waiting: {len(data['questions_waiting'])}"
            f' (tt reply ID "answer"; ID: {ids}{more})'
        )
    if args.tasks:
        _print_task_breakdown(ctx, data)
    if args.deep:
        for agent, entry in zip(agents, data["agents"], strict=True):
            _print_deep(ctx, agent, entry, by_id)
    return 0


def _print_spending(ctx: Context, agents: list[Agent], data: dict[str, Any]) -> None:
    """The town's total and limit, and the agents that wait on the town rather than
    work: paused for spending, held by a rate limit, waiting for a slot."""
    town = _usage_of(data["usage"])
    budget = data["budget"]
    if not town.empty or budget:
        limit = f" (budget {describe_budget(_budget_of(budget))})" if budget else ""
        ctx.out.line(f"Spent:   {describe_usage(town)}{limit}")
    paused = [a.name for a in agents if spending_paused(a)]
    if paused:
        first = paused[0]
        ctx.out.line(
            f"Paused for budget: {', '.join(paused)} (raise it with 'tt budget set',"
            f" then 'tt resume {first}')"
        )
    held: dict[str, list[str]] = {}
    for agent in agents:
        reason = agent.state_reason or ""
        if reason.startswith(RATE_LIMITED) and not agent.state.terminal:
            held.setdefault(reason, []).append(agent.name)
    for reason, names in held.items():
        what = reason.split(":", 1)[1].strip() if ":" in reason else reason  # "claude until …"
        ctx.out.line(f"Rate limit: {what} ({plural(len(names), 'agent')} wait)")
    waiting = [a.name for a in agents if (a.state_reason or "").startswith(WAITING_FOR_SLOT)]
    if waiting:
        ctx.out.line(
            f"Waiting for a slot: {', '.join(waiting[:5])}{', …' if len(waiting) > 5 else ''}"
            " (runtime.max_parallel_rounds CLI rounds run at once)"
        )


def _usage_of(data: dict[str, Any]) -> Usage:
    """The town's usage back from its JSON form."""
    return converter.structure(data, Usage)


def _budget_of(data: dict[str, Any]) -> Budget:
    return converter.structure(data, Budget)


def _print_task_breakdown(ctx: Context, data: dict[str, Any]) -> None:
    ctx.out.line()
    ctx.out.line("Tasks by state:")
    for state in TaskState:
        ctx.out.line(f"  {state.value:<10} {data['tasks'].get(state.value, 0)}")
    by_agent = data["tasks_by_agent"]
    if by_agent:
        ctx.out.line()
        ctx.out.line("Tasks by agent:")
        headers = ["AGENT", *(s.value.upper() for s in TaskState)]
        rows = [[who, *(c.get(s.value, 0) for s in TaskState)] for who, c in by_agent.items()]
        ctx.out.table(rows, headers)


def _print_deep(ctx: Context, agent: Agent, entry: dict[str, Any], tasks: dict[str, Task]) -> None:
    out = ctx.out
    out.line()
    role = f" [{agent.role_id}]" if agent.role_id else ""
    reason = f" ({agent.state_reason})" if agent.state_reason else ""
    task = tasks.get(entry["current_task_live"] or "")
    shown = state_shown(agent, task, hosted=entry["hosted"], why=False)
    out.line(f"{agent.label}{role}: {shown}{reason}")
    rounds = f"{agent.rounds_completed}" + (f"/{agent.max_rounds}" if agent.max_rounds else "")
    out.line(
        f"  rounds: {rounds}   tasks completed: {agent.tasks_completed}"
        f"   uptime: {duration(entry['uptime_seconds'])}"
        f"   heartbeat: {ago_seconds(entry['heartbeat_age_seconds'])}"
    )
    out.line(
        f"  inbox: {entry['inbox']} queued, {entry['inflight']} in flight"
        f"   current task: {short(entry['current_task_live'])}"
        f"   cli: {agent.cli}   id: {agent.id}"
    )
    default = entry["budget_default"]
    limits = [describe_budget(b) for b in (agent.budget,) if b is not None]
    if default:
        limits.append(f"{describe_budget(_budget_of(default))} (town default)")
    out.line(
        f"  spent: {describe_usage(agent.usage)}"
        f"   budget: {' and '.join(limits) if limits else 'no limit'}"
    )
    session = agent.session_id or "(none yet)"
    out.line(f"  mode: {agent.spawn_mode.value}   session: {session}")
    if entry.get("worktree_summary"):
        out.line(f"  worktree: {entry['worktree_summary']}")
    if entry["log_tail"]:
        out.line(f"  last log lines (.tt/logs/{agent.name}.log):")
        for line in entry["log_tail"]:
            out.line(f"    {clip(line, 150)}")
