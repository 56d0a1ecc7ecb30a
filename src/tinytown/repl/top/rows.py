"""The agent table: which agents (filter), in which order (sort), and each as one row of
cells with a style. Pure functions of a :class:`~.model.View`, so they are tested apart
from the screen."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from prompt_toolkit.formatted_text import StyleAndTextTuples

from tinytown.cli.output import duration, plural
from tinytown.model import AgentState
from tinytown.model.ids import age_seconds
from tinytown.repl.top.logtail import Tail
from tinytown.repl.top.view import Row, View
from tinytown.services.eventformat import cut

#: prompt-toolkit styles of the agent states (as ``tt status`` colours them).
STATE_STYLES = {
    AgentState.WORKING: "ansigreen",
    AgentState.IDLE: "ansicyan",
    AgentState.STARTING: "ansiyellow",
    AgentState.PAUSED: "ansiyellow",
    AgentState.DRAINING: "ansiyellow",
    AgentState.ERROR: "ansired bold",
    AgentState.STOPPED: "#888888",
    AgentState.COLD: "#888888",
}
#: A live agent held back for a reason (a slot, a rate limit, a budget, its setup).
WAITING_STYLE = "ansimagenta"
#: The ``s`` key cycles through these orders.
SORTS = ("town", "name", "state", "busy", "rounds", "done")
#: The ``state`` order: what needs a look first.
STATE_ORDER = {
    s: n
    for n, s in enumerate(
        [
            AgentState.ERROR,
            AgentState.WORKING,
            AgentState.DRAINING,
            AgentState.PAUSED,
            AgentState.STARTING,
            AgentState.IDLE,
            AgentState.STOPPED,
            AgentState.COLD,
        ]
    )
}


@attrs.frozen
class Column:
    title: str
    width: int
    right: bool = False


#: The table's columns; OUTPUT takes what is left of the width.
COLUMNS = (
    Column("NAME", 20),
    Column("ROLE", 10),
    Column("STATE", 22),
    Column("TASK", 28),
    Column("ROUND", 6, right=True),
    Column("INBOX", 5, right=True),
    Column("FLIGHT", 6, right=True),
    Column("RNDS", 5, right=True),
    Column("DONE", 5, right=True),
    Column("OUTPUT", 0),
)
#: Columns given up, in this order, when the terminal is narrow (by title).
DROP_ORDER = ("ROLE", "FLIGHT", "DONE", "RNDS", "ROUND", "TASK")
#: OUTPUT keeps at least this many cells before other columns are given up.
OUTPUT_MIN = 24


def state_label(row: Row, hosted: bool) -> tuple[str, str]:
    """The STATE cell and its style: the state, with the reason a live agent is held
    back (``waiting for a slot``, ``paused: budget``…), or that no runtime hosts it."""
    agent = row.agent
    state = agent.state
    style = STATE_STYLES.get(state, "")
    reason = " ".join((agent.state_reason or "").split())
    if not hosted and not state.terminal:
        return f"{state.value} (no runtime)", "#888888"
    if reason and not state.terminal:
        if "slot" in reason.lower() and state is not AgentState.PAUSED:
            return "waiting for a slot", WAITING_STYLE
        return f"{state.value}: {reason}", WAITING_STYLE
    if reason:
        return f"{state.value}: {reason}", style
    return state.value, style


def matches(row: Row, needle: str, hosted: bool) -> bool:
    """Whether the ``/`` filter keeps ``row``: its text contains ``needle`` (any case)."""
    if not needle:
        return True
    agent = row.agent
    hay = " ".join(
        [
            agent.name,
            agent.nickname,
            agent.role_id or "",
            state_label(row, hosted)[0],
            row.task.description if row.task else "",
            row.task.id[:8] if row.task else "",
        ]
    )
    return needle.lower() in hay.lower()


def sort_key(mode: str) -> Callable[[Row], Any]:
    if mode == "name":
        return lambda r: r.agent.name.lower()
    if mode == "state":
        return lambda r: (STATE_ORDER.get(r.agent.state, 99), r.agent.name.lower())
    if mode == "busy":
        return lambda r: (-(r.inbox + r.inflight), r.agent.name.lower())
    if mode == "rounds":
        return lambda r: (-r.agent.rounds_completed, r.agent.name.lower())
    if mode == "done":
        return lambda r: (-r.agent.tasks_completed, r.agent.name.lower())
    return lambda r: r.agent.created_at


def ordered(view: View, mode: str, needle: str) -> list[str]:
    """The ids of the agents shown, in the order shown."""
    hosted = view.runtime is not None
    rows = [r for r in view.rows.values() if matches(r, needle, hosted)]
    rows.sort(key=sort_key(mode))
    return [r.agent.id for r in rows]


def layout(width: int) -> list[Column]:
    """The columns that fit ``width`` cells (one space between columns, one for the
    selection mark); OUTPUT gets the rest."""
    columns = list(COLUMNS)
    for title in (None, *DROP_ORDER):
        if title is not None:
            columns = [c for c in columns if c.title != title]
        used = 1 + sum(c.width + 1 for c in columns if c.title != "OUTPUT")
        if width - used >= OUTPUT_MIN or title == DROP_ORDER[-1]:
            break
    used = 1 + sum(c.width + 1 for c in columns if c.title != "OUTPUT")
    return [
        c if c.title != "OUTPUT" else attrs.evolve(c, width=max(width - used, 0)) for c in columns
    ]


def fit(text: str, column: Column) -> str:
    """``text`` in exactly ``column.width`` cells (cut with ``…``)."""
    if column.width <= 0:
        return ""
    if len(text) > column.width:
        text = text[: column.width - 1] + "…"
    return text.rjust(column.width) if column.right else text.ljust(column.width)


def cells(
    row: Row, tail: Tail, hosted: bool, now: float | None = None
) -> dict[str, tuple[str, str]]:
    """Each column's text and style for one agent."""
    agent = row.agent
    state, style = state_label(row, hosted)
    task = f"{row.task.id[:8]} {cut(row.task.description, 60)}" if row.task else "-"
    in_round = tail.in_round and tail.round_started is not None and not agent.state.terminal
    now = time.time() if now is None else now
    took = duration(now - tail.round_started) if in_round and tail.round_started else "-"
    return {
        "NAME": (f"{agent.name} ({agent.nickname})", "bold"),
        "ROLE": (agent.role_id or "-", ""),
        "STATE": (state, style),
        "TASK": (task, ""),
        "ROUND": (took, ""),
        "INBOX": (str(row.inbox), "ansiyellow" if row.inbox else ""),
        "FLIGHT": (str(row.inflight), ""),
        "RNDS": (str(agent.rounds_completed), ""),
        "DONE": (str(agent.tasks_completed), ""),
        "OUTPUT": (tail.line, "#aaaaaa"),
    }


def header_cells(columns: Sequence[Column]) -> str:
    return " " + " ".join(fit(c.title, c) for c in columns)


def row_line(
    row: Row, tail: Tail, hosted: bool, now: float, columns: list[Column], chosen: bool
) -> StyleAndTextTuples:
    """One agent's line of the table (the selected one reversed, full width)."""
    values = cells(row, tail, hosted, now)
    base = "class:selected " if chosen else ""
    line: StyleAndTextTuples = [(base, "▶" if chosen else " ")]
    for column in columns:
        text, style = values[column.title]
        last = column is columns[-1]
        cell = fit(text, column)
        line.append((base + style, cell.rstrip() if last and not chosen else cell))
        if not last:
            line.append((base, " "))
    return line


def header(view: View) -> StyleAndTextTuples:
    """The two header lines: the town and its runtime; agents and tasks by state, the
    backlog, rounds per minute, the cost, the questions waiting."""
    if not view.loaded:
        return [("class:title", f" {view.town}"), ("", " · loading…")]
    holder = view.runtime
    if holder is None:
        run = [("ansiyellow", "not running"), ("class:dim", " (start it with 'tt run')")]
    else:
        up = age_seconds(holder.started_at)
        run = [
            ("ansigreen", "running"),
            ("", f" pid {holder.pid} on {holder.host}"),
            ("", f" · up {duration(up)}" if up is not None else ""),
        ]
    agents = " ".join(f"{s.value} {n}" for s, n in view.agent_counts().items()) or "none"
    tasks = " ".join(f"{s.value} {n}" for s, n in view.tasks.items()) or "none"
    cost = view.cost()
    line1: StyleAndTextTuples = [("class:title", f" {view.town} "), ("", "· "), *run]
    if view.stale:
        line1.append(("class:error", " · Redis unreachable"))
    line2: StyleAndTextTuples = [
        ("", f" agents {len(view.rows)}: {agents} · tasks: {tasks}"),
        ("", f" · backlog {view.backlog} · {view.rounds_per_minute():g} rounds/min"),
        ("", f" · ${cost:.2f}" if cost else ""),
    ]
    if view.questions:
        line2.append(("class:question", f" · {plural(len(view.questions), 'question')}"))
    return [*line1, ("", "\n"), *line2]
