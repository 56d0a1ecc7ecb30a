"""``tt status``: the town at a glance (``--tasks`` and ``--deep`` add detail)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

from tinytown.cli.context import Context
from tinytown.cli.output import ago, clip, duration, plural, record, short
from tinytown.model import Agent, Task, TaskState
from tinytown.model.ids import age_seconds
from tinytown.services.endpoint import redis_url
from tinytown.services.town import Town

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


async def _gather(ctx: Context, town: Town, args: argparse.Namespace) -> dict[str, Any]:
    holder = await town.runtime()
    agents = await town.agents.list()
    tasks = await town.tasks.list()
    backlog = await town.backlog.list()
    counts = await ctx.inbox_counts(a.id for a in agents)
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
        "backlog": len(backlog),
        "questions_waiting": [m.id for m in await town.messages.questions_waiting()],
    }
    for agent in agents:
        entry = record(agent)
        entry["inbox"], entry["inflight"] = counts[agent.id]
        if args.deep:
            entry["uptime_seconds"] = _uptime(agent)
            entry["heartbeat_age_seconds"] = age_seconds(agent.last_heartbeat)
            entry["log_tail"] = log_tail(town.root, agent.name)
        data["agents"].append(entry)
    if args.tasks:
        data["tasks_by_agent"] = _by_agent(tasks, {a.id: a.name for a in agents})
    data["_objects"] = (agents, tasks)
    return data


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
    agents, _tasks = data.pop("_objects")
    if ctx.json:
        ctx.out.json(data)
        return 0
    out = ctx.out
    out.line(f"Town:    {data['town']}")
    out.line(f"Root:    {data['root']}")
    out.line(f"Redis:   {data['redis']} ({data['redis_kind']})")
    runtime = data["runtime"]
    if runtime:
        out.line(
            f"Runtime: running, pid {runtime['pid']} on {runtime['host']}"
            f" (since {runtime['started_at']})"
        )
    else:
        out.line("Runtime: not running (start it with 'tt run')")
    out.line()
    if not agents:
        out.line("Agents:  none (add one with 'tt spawn NAME')")
    else:
        out.line(f"Agents ({len(agents)}):")
        rows = [
            [a.name, a.nickname, a.role_id, a.state.value, short(a.current_task), e["inbox"]]
            for a, e in zip(agents, data["agents"], strict=True)
        ]
        out.table(rows, ["NAME", "NICKNAME", "ROLE", "STATE", "TASK", "INBOX"])
    out.line()
    out.line(f"Tasks:   {_task_summary(data['tasks'])}")
    out.line(f"Backlog: {plural(data['backlog'], 'task')}")
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
            _print_deep(ctx, agent, entry)
    return 0


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


def _print_deep(ctx: Context, agent: Agent, entry: dict[str, Any]) -> None:
    out = ctx.out
    out.line()
    role = f" [{agent.role_id}]" if agent.role_id else ""
    reason = f" ({agent.state_reason})" if agent.state_reason else ""
    out.line(f"{agent.label}{role}: {agent.state.value}{reason}")
    rounds = f"{agent.rounds_completed}" + (f"/{agent.max_rounds}" if agent.max_rounds else "")
    out.line(
        f"  rounds: {rounds}   tasks completed: {agent.tasks_completed}"
        f"   uptime: {duration(entry['uptime_seconds'])}"
        f"   heartbeat: {ago(agent.last_heartbeat)}"
    )
    out.line(
        f"  inbox: {entry['inbox']} queued, {entry['inflight']} in flight"
        f"   current task: {short(agent.current_task)}"
        f"   cli: {agent.cli}   id: {agent.id}"
    )
    if entry["log_tail"]:
        out.line(f"  last log lines (.tt/logs/{agent.name}.log):")
        for line in entry["log_tail"]:
            out.line(f"    {clip(line, 150)}")
