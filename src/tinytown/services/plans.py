"""Syncing the plan file ``tasks.toml`` with a town (``tt sync push|pull``).

``push`` maps each plan id to exactly one task through ``keys.plan_ids`` and applies the
whole file in one atomic Redis script, so it is idempotent and never half-applied.
``pull`` writes the tasks' Redis state back into the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tinytown.errors import InvalidTransitionError, NotFoundError, TinytownError
from tinytown.model import Agent, Message, Task, TaskAssign, TaskState, dumps, loads, now
from tinytown.model.ids import SUPERVISOR_ID, new_id, parse_time
from tinytown.services.planfile import (
    PLAN_FILE,
    TEMPLATE,
    Plan,
    PlanEntry,
    PlanError,
    default_path,
    leading_comments,
    load_plan,
    parse_plan,
    render,
    shown_path,
    write_atomic,
    write_template,
)
from tinytown.services.tasks import refuse_terminal
from tinytown.store import indexes
from tinytown.store.records import GuardFailed, Op

if TYPE_CHECKING:
    from tinytown.services.town import Town

__all__ = [
    "PLAN_FILE",
    "Plan",
    "PlanEntry",
    "PlanError",
    "PullReport",
    "PushReport",
    "default_path",
    "load_plan",
    "parse_plan",
    "plan_tasks",
    "pull",
    "push",
    "resolve_agents",
    "shown_path",
    "write_template",
]

FINISH_VERBS = {
    TaskState.COMPLETED: "complete",
    TaskState.FAILED: "fail",
    TaskState.CANCELLED: "cancel",
}
MAX_ATTEMPTS = 20


async def resolve_agents(town: Town, plan: Plan) -> dict[str, Agent]:
    """Agent reference -> agent for every ``agent`` in the plan; PlanError if any fails."""
    refs: dict[str, list[PlanEntry]] = {}
    default = plan.meta.get("default_agent")
    for entry in plan.entries:
        ref = entry.agent or default
        if ref and entry.status not in FINISH_VERBS:
            refs.setdefault(ref, []).append(entry)
    found: dict[str, Agent] = {}
    problems: list[str] = []
    for ref, users in refs.items():
        try:
            found[ref] = await town.agents.resolve(ref)
        except TinytownError as exc:
            for entry in users:
                key = "agent" if entry.agent else "default_agent"
                line = plan.key_line(entry, "agent") if entry.agent else entry.line
                reason = str(exc).rstrip(".")
                problems.append(f"{plan.shown}:{line}: task {entry.id!r}: field {key!r}: {reason}.")
    if problems:
        raise PlanError(problems)
    return found


# -- push -------------------------------------------------------------------------------


@attrs.define
class PushReport:
    """What ``sync push`` did, by plan id."""

    created: list[str] = attrs.field(factory=list)
    updated: list[str] = attrs.field(factory=list)
    assigned: list[str] = attrs.field(factory=list)
    backlogged: list[str] = attrs.field(factory=list)
    finished: list[str] = attrs.field(factory=list)
    unchanged: list[str] = attrs.field(factory=list)
    notes: list[str] = attrs.field(factory=list)
    task_ids: dict[str, str] = attrs.field(factory=dict)

    def counts(self) -> dict[str, int]:
        names = ("created", "updated", "assigned", "backlogged", "finished", "unchanged")
        return {name: len(getattr(self, name)) for name in names}


async def push(town: Town, path: Path, *, sender: str = SUPERVISOR_ID) -> PushReport:
    """Create or update the town's tasks from the plan file, atomically and idempotently.

    The file is checked completely (syntax, fields, parents, agents) before anything is
    written; then every change goes into Redis in one script, retried if a task changed
    meanwhile. Cancellable: a cancelled push has applied all of its changes or none.
    ``sender`` (an agent id, default the supervisor) is who assigns the tasks; a cold,
    stopped or error agent is refused (checked atomically with the write).
    """
    for _ in range(MAX_ATTEMPTS):
        plan = load_plan(path)
        agents = await resolve_agents(town, plan)
        report, ops, guards = await _plan_push(town, plan, agents, sender)
        if not ops:
            return report
        try:
            await town.store.apply(town.keys.plan_ids, ops=ops, guards=guards)
        except GuardFailed:
            continue  # a task, an agent or a plan id changed under us: start over
        return report
    raise InvalidTransitionError("Tasks kept changing during 'sync push'; run it again.")


async def _plan_push(
    town: Town, plan: Plan, agents: dict[str, Agent], sender: str
) -> tuple[PushReport, list[Op], list[tuple[list[str], Any]]]:
    keys, store = town.keys, town.store
    report = PushReport()
    pids = [e.id for e in plan.entries]
    mapped = await indexes.plan_task_ids(store, pids)
    raws = await indexes.raw_records(store, [keys.task(t) for t in mapped if t])
    raw_of = dict(zip([t for t in mapped if t], raws, strict=True))
    backlog = set(await indexes.backlog_ids(store))
    ids = {p: (t if t and raw_of.get(t) else new_id()) for p, t in zip(pids, mapped, strict=True)}
    report.task_ids = dict(ids)
    ops: list[Op] = []
    guards: list[tuple[list[str], Any]] = []
    used_agents: set[str] = set()
    for entry, stale in zip(plan.entries, mapped, strict=True):
        pid, task_id = entry.id, ids[entry.id]
        parent_id = ids[entry.parent] if entry.parent else None
        ref = entry.agent or plan.meta.get("default_agent")
        agent = agents.get(ref) if ref else None
        raw = raw_of.get(stale) if stale else None
        if raw is None:  # new, or its mapping points to a task that is gone
            guards.append(
                (["HGET", keys.plan_ids, pid], stale)
                if stale
                else (["HEXISTS", keys.plan_ids, pid], 0)
            )
            task = attrs.evolve(
                Task.new(entry.description, tags=entry.tags, parent_id=parent_id, plan_id=pid),
                id=task_id,
            )
            report.created.append(pid)
            ops += [
                ["HSET", keys.plan_ids, pid, task_id],
                ["ZADD", keys.tasks, str(parse_time(task.created_at).timestamp()), task_id],
                store.event_op(
                    "task", task=task_id, text=f"new task ({pid}): {entry.description[:100]}"
                ),
            ]
        else:
            try:
                task = loads(Task, raw, where=keys.task(task_id))
            except TinytownError as exc:
                report.notes.append(f"task {pid!r}: skipped: {exc}")
                continue
            guards.append((["GET", keys.task(task_id)], raw))
            if task.state.terminal:
                if entry.status and entry.status is not task.state:
                    report.notes.append(
                        f"task {pid!r} is {task.state.value} in Redis; the file's"
                        f" {entry.status.value!r} is not applied (terminal states are final)."
                    )
                report.unchanged.append(pid)
                continue
            want = (entry.description, entry.tags, parent_id)
            if (task.description, task.tags, task.parent_id) != want:
                task = attrs.evolve(
                    task, description=want[0], tags=want[1], parent_id=want[2], updated_at=now()
                )
                report.updated.append(pid)
        before = task
        if entry.status in FINISH_VERBS:
            verb = FINISH_VERBS[entry.status]
            task = task.transition(verb, result=f"{entry.status.value} via tt sync push")
            ops.append(["LREM", keys.backlog, "0", task_id])
            ops.append(
                store.event_op(
                    verb,
                    task=task_id,
                    state=task.state.value,
                    text=f"{pid} {task.state.value} (sync push)",
                )
            )
            report.finished.append(pid)
        elif task.state is TaskState.PENDING and agent is not None:
            task = task.transition("assign", assigned_to=agent.id, assigned_by=sender)
            used_agents.add(agent.id)
            ops.append(["LREM", keys.backlog, "0", task_id])
            ops += store.deliver_ops(
                Message.new(sender, agent.id, TaskAssign(task_id)), event=False
            )
            ops.append(
                store.event_op(
                    "assign", agent=agent.id, task=task_id, text=f"{agent.name} <- {pid}"
                )
            )
            report.assigned.append(pid)
        elif task.state is TaskState.PENDING and task_id not in backlog:
            ops += [["RPUSH", keys.backlog, task_id], ["PUBLISH", keys.wake, "backlog"]]
            report.backlogged.append(pid)
        elif agent is not None and task.assigned_to not in (None, agent.id):
            report.notes.append(
                f"task {pid!r} is already {task.state.value} by another agent; not reassigned."
            )
        if raw is None or task != before or pid in report.updated:
            ops.insert(0, ["SET", keys.task(task_id), dumps(task)])
        elif pid not in report.backlogged:
            report.unchanged.append(pid)
    # Liveness guard: each assignee's record is the one checked here, at the write.
    used = sorted(used_agents)
    for agent_id, raw in zip(
        used, await indexes.raw_records(store, [keys.agent(a) for a in used]), strict=True
    ):
        if raw is None:
            raise NotFoundError(f"Agent {agent_id} no longer exists.")
        refuse_terminal(loads(Agent, raw, where=keys.agent(agent_id)))
        guards.append((["GET", keys.agent(agent_id)], raw))
    return report, ops, guards


# -- listing and pull -------------------------------------------------------------------


async def plan_tasks(town: Town, plan: Plan) -> list[Task | None]:
    """The Redis task of each plan entry (None when not pushed yet), in file order."""
    if not plan.entries:
        return []
    mapped = await indexes.plan_task_ids(town.store, [e.id for e in plan.entries])
    found = {t.id: t for t in await town.store.mget(Task, [town.keys.task(t) for t in mapped if t])}
    return [found.get(t) if t else None for t in mapped]


@attrs.define
class PullReport:
    """What ``sync pull`` wrote into the file."""

    path: Path
    updated: list[str] = attrs.field(factory=list)
    added: list[str] = attrs.field(factory=list)
    unchanged: list[str] = attrs.field(factory=list)
    not_pushed: list[str] = attrs.field(factory=list)
    written: bool = False


async def pull(town: Town, path: Path, *, include_all: bool = False) -> PullReport:
    """Write each planned task's Redis state (``status``, ``agent``) back into the file.

    Descriptions, tags, parents and ``[meta]`` are kept; comments before the first table
    are kept. With ``include_all``, tasks created outside the plan are added (and given
    plan ids ``task-<short id>`` in Redis first, so a later push does not duplicate them).
    Cancellable: the file is replaced atomically, so it is either old or new.
    """
    if path.exists() or not include_all:
        plan = load_plan(path)
    else:
        plan = Plan(path, (), {}, (), TEMPLATE.split("\n\n[[tasks]]")[0] + "\n")
    report = PullReport(path)
    names = {a.id: a.name for a in await town.agents.list()}
    tables: list[dict[str, Any]] = []
    for entry, table, task in zip(
        plan.entries, plan.raw, await plan_tasks(town, plan), strict=True
    ):
        if task is None:
            report.not_pushed.append(entry.id)
            tables.append(dict(table))
            continue
        new = _with_state(table, task, names)
        (report.updated if new != table else report.unchanged).append(entry.id)
        tables.append(new)
    if include_all:
        extra = await _adopt_others(town, {e.id for e in plan.entries})
        by_task = {tid: pid for pid, tid in (await _plan_map(town)).items()}
        for task in extra:
            row: dict[str, Any] = {"id": task.plan_id, "description": task.description}
            if task.tags:
                row["tags"] = list(task.tags)
            if task.parent_id and by_task.get(task.parent_id):
                row["parent"] = by_task[task.parent_id]
            tables.append(_with_state(row, task, names))
            report.added.append(str(task.plan_id))
    text = render(plan.meta, tables, leading_comments(plan.text))
    parse_plan(path, text)  # never write a file that would not read back
    if report.updated or report.added or not path.exists():  # else keep the user's layout
        write_atomic(path, text)
        report.written = True
    return report


def _with_state(table: dict[str, Any], task: Task, names: dict[str, str]) -> dict[str, Any]:
    new = dict(table)
    new["status"] = task.state.value
    if task.assigned_to:
        new["agent"] = names.get(task.assigned_to, task.assigned_to)
    else:
        new.pop("agent", None)
    return new


async def _plan_map(town: Town) -> dict[str, str]:
    """Plan id -> task id, as registered in Redis."""
    return await indexes.plan_map(town.store)


async def _adopt_others(town: Town, in_file: set[str]) -> list[Task]:
    """Tasks not in the file, each given a plan id registered in Redis (atomically)."""
    keys = town.keys
    for _ in range(MAX_ATTEMPTS):
        mapping = await _plan_map(town)
        owner = {tid: pid for pid, tid in mapping.items()}
        ids = await indexes.task_ids(town.store)
        raws = await indexes.raw_records(town.store, [keys.task(i) for i in ids])
        out: list[Task] = []
        ops: list[Op] = []
        guards: list[tuple[list[str], Any]] = []
        taken = set(mapping) | in_file
        for task_id, raw in zip(ids, raws, strict=True):
            pid = owner.get(task_id)
            if raw is None or pid in in_file:
                continue
            try:
                task = loads(Task, raw, where=keys.task(task_id))
            except TinytownError as exc:
                town.store.warnings.append(str(exc))
                continue
            if pid is None:
                pid = f"task-{task_id[:8]}"
                width = 8
                while pid in taken:
                    width += 4
                    pid = f"task-{task_id.replace('-', '')[:width]}"
                taken.add(pid)
                guards.append((["HEXISTS", keys.plan_ids, pid], 0))
                ops.append(["HSET", keys.plan_ids, pid, task_id])
            if task.plan_id != pid:
                task = attrs.evolve(task, plan_id=pid)
                guards.append((["GET", keys.task(task_id)], raw))
                ops.append(["SET", keys.task(task_id), dumps(task)])
            out.append(task)
        try:
            if ops:
                await town.store.apply(keys.plan_ids, ops=ops, guards=guards)
        except GuardFailed:
            continue
        return out
    raise InvalidTransitionError("Tasks kept changing during 'sync pull --all'; run it again.")
