"""The bench's command line: run the chosen groups, print the table or JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import bench
from bench.env import Bench, mono
from bench.figures import GROUPS, Row
from bench.report import machine, table


def measure(name: str, b: Bench) -> list[Row]:
    """The rows of group ``name``; one error row per figure if the group fails."""
    try:
        rows: list[Row] = importlib.import_module(f"bench.{name}").run(b)
    except Exception as exc:  # one broken measurement must not hide the others
        reason = f"{type(exc).__name__}: {exc}"
        return [figure.failed(reason) for figure in GROUPS[name]]
    expected = [figure.key for figure in GROUPS[name]]
    if [row.key for row in rows] != expected:  # the registry is the contract
        reason = f"group {name} reported {[r.key for r in rows]}, not {expected}"
        return [figure.failed(reason) for figure in GROUPS[name]]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.py", description=(bench.__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small N everywhere (< 30 s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(GROUPS),
        metavar="NAME",
        help=f"run only these groups: {', '.join(GROUPS)}",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="write pyinstrument profiles: each group's in-process part and each town host",
    )
    args = parser.parse_args(argv)
    b = Bench(args.quick, args.profile)
    rows: list[Row] = []
    info: dict[str, Any] = {}
    started = mono()
    try:
        b.start()
        info = machine()
        for name in args.only or list(GROUPS):
            t0 = mono()
            rows += measure(name, b)
            if not args.json:
                print(f"  [{name}: {mono() - t0:.1f} s]", file=sys.stderr, flush=True)
    finally:
        b.close()
    total = mono() - started
    info["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    if args.json:
        print(
            json.dumps(
                {
                    "machine": info,
                    "quick": args.quick,
                    "seconds": round(total, 1),
                    "figures": [r.as_json() for r in rows],
                },
                indent=2,
            )
        )
    else:
        print(
            f"Tinytown bench ({'quick' if args.quick else 'full'}), {total:.0f} s:"
            f" {info['nproc']} x {info['cpu']}, Python {info['python']},"
            f" Redis {info['redis']}; load average {' '.join(info['loadavg_at_start'])}"
            f" at start, {' '.join(info['loadavg_at_end'])} at end\n"
        )
        print(table(rows))
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
