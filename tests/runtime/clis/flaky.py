#!/usr/bin/env python3
"""A test CLI in front of a fake agent CLI (actors/fake_*.py) that fails on cue.

``flaky.py CLI ARGS...`` runs ``actors/fake_<CLI>.py ARGS...``. Each run takes the first
line of the plan file named by $FLAKY_PLAN (removing it): ``ok`` (or no line left) passes
the round's prompt on; anything else replaces the prompt by a task with that directive,
e.g. ``ratelimit 30`` or ``notloggedin``, so the fake fails as its real CLI does. Each
run appends its pid to $FLAKY_RUNS (when set). Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

ACTORS = Path(__file__).resolve().parents[3] / "actors"


def next_step() -> str:
    plan = os.environ.get("FLAKY_PLAN")
    if not plan:
        return "ok"
    with open(plan, "r+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # agents of one town run at once
        lines = f.read().splitlines()
        f.seek(0)
        f.truncate()
        f.write("".join(line + "\n" for line in lines[1:]))
    return lines[0].strip() if lines else "ok"


def main() -> int:
    cli, args = sys.argv[1], sys.argv[2:]
    prompt = sys.stdin.read()
    step = next_step()
    runs = os.environ.get("FLAKY_RUNS")
    if runs:
        with open(runs, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {step}\n")
    if step != "ok":
        prompt = f"Description: {step}\n"
    fake = ACTORS / f"fake_{cli}.py"
    return subprocess.run([sys.executable, str(fake), *args], input=prompt, text=True).returncode


if __name__ == "__main__":
    sys.exit(main())
