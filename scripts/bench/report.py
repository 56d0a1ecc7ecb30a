"""What the bench prints: the machine it ran on and the table of figures."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

from bench.figures import Row
from tinytown.store.server import find_server_binary, server_version


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    binary = ""
    with contextlib.suppress(Exception):
        binary = find_server_binary()
    return {
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "redis": ".".join(map(str, server_version(binary))) if binary else "unknown",
        "platform": platform.platform(),
    }


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def table(rows: list[Row]) -> str:
    head = ["figure", "unit", "tinytown", "baseline", "ratio", "target", "met?"]
    body = [
        [
            r.label,
            r.unit,
            fmt(r.tinytown) if r.error is None else "ERROR",
            fmt(r.baseline),
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            {True: "yes", False: "NO", None: "-"}[r.met],
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(cells) for cells in body]
    baselines = [f"  {r.label}: baseline = {r.baseline_label}" for r in rows if r.baseline_label]
    errors = [f"  {r.label}: {r.error}" for r in rows if r.error]
    return "\n".join(
        out + ["", "Baselines:", *baselines] + (["Errors:", *errors] if errors else [])
    )
