"""The one registry of the bench's figures: every figure key, its unit and target, and the
group (module of this package) that measures it. The table, ``--only`` and
tests/test_bench.py all read it; nothing else spells a figure key.

Import-light on purpose (no tinytown, no trio): the test reads it without running a bench.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    """One measured figure: Tinytown's value, the baseline's, and whether the target is met."""

    key: str
    label: str
    unit: str
    tinytown: float | None
    baseline: float | None
    baseline_label: str
    target: str
    met: bool | None
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.tinytown is None or not self.baseline:
            return None
        return self.tinytown / self.baseline

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return out


@dataclass(frozen=True)
class Figure:
    """A figure the bench reports: its key (in --json and the docs), unit and target."""

    key: str
    unit: str
    target: str

    def row(
        self,
        label: str,
        tinytown: float,
        baseline: float | None,
        baseline_label: str,
        met: bool | None,
        details: dict[str, Any] | None = None,
    ) -> Row:
        return Row(
            self.key,
            label,
            self.unit,
            tinytown,
            baseline,
            baseline_label,
            self.target,
            met,
            details or {},
        )

    def failed(self, reason: str) -> Row:
        """The row of a figure whose group could not be measured."""
        return Row(self.key, self.key, self.unit, None, None, "", self.target, None, error=reason)


LATENCY_P50 = Figure("latency_p50_ms", "ms", "<= 2x baseline")
LATENCY_P99 = Figure("latency_p99_ms", "ms", "<= 1 ms")
THROUGHPUT = Figure("throughput_msg_per_s", "msg/s", ">= 20,000 and 0.35x")
TASKS = Figure("tasks_per_s", "tasks/s", ">= fastest peer")
TASKS_LIMIT = Figure("tasks_vs_spawn_limit", "tasks/s", ">= 50 % of limit")
BROADCAST = Figure("broadcast_ms", "ms", "<= 100 ms")
SPAWN = Figure("spawn_s", "s", "<= 3 s")
IDLE_CPU = Figure("idle_cpu_pct", "% core", "<= 1 %")
RSS_PER_AGENT = Figure("rss_per_agent_kib", "KiB", "<= 100 KiB")
INTERRUPT = Figure("interrupt_ms", "ms", "<= 100 ms")
KILL = Figure("kill_ms", "ms", "<= 100 ms")
TT_SEND = Figure("tt_send_ms", "ms", "<= 60 ms")
TT_TASK_COMPLETE = Figure("tt_task_complete_ms", "ms", "<= 60 ms")
TT_STATUS = Figure("tt_status_ms", "ms", "<= 60 ms")
SCALE_SPAWN = Figure("scale_spawn_s", "s", "<= 10 s")
SCALE_IDLE_CPU = Figure("scale_idle_cpu_pct", "% core", "<= 1 %")
SCALE_RSS = Figure("scale_rss_per_agent_kib", "KiB", "<= 20 KiB")
SCALE_BROADCAST = Figure("scale_broadcast_ms", "ms", "-")
SCALE_DISPATCH = Figure("scale_dispatch_ms", "ms", "-")
SCALE_STATUS = Figure("scale_tt_status_ms", "ms", "<= 1 s")

#: Group name (= module ``bench.<name>``, whose ``run(bench)`` returns the rows) -> the
#: figures it measures, in the order of the table.
GROUPS: dict[str, tuple[Figure, ...]] = {
    "latency": (LATENCY_P50, LATENCY_P99),
    "throughput": (THROUGHPUT,),
    "tasks": (TASKS, TASKS_LIMIT),
    "broadcast": (BROADCAST,),
    "spawn": (SPAWN, IDLE_CPU, RSS_PER_AGENT),
    "control": (INTERRUPT, KILL),
    "cli": (TT_SEND, TT_TASK_COMPLETE, TT_STATUS),
    "scale": (
        SCALE_SPAWN,
        SCALE_IDLE_CPU,
        SCALE_RSS,
        SCALE_BROADCAST,
        SCALE_DISPATCH,
        SCALE_STATUS,
    ),
}

#: Every figure by key.
FIGURES: dict[str, Figure] = {f.key: f for group in GROUPS.values() for f in group}


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
