#!/usr/bin/env python3
"""A fake agent CLI that keeps a ledger of the work it does (for the chaos soak and fault tests).

Tinytown runs it once per round with the round's prompt on stdin, like any agent CLI. For
every ``Task ID:`` in the prompt it appends a ``start`` line to the ledger, works a little
(a random short sleep, sometimes through a child process), then appends an ``end`` line per
task and exits 0. A task with an ``end`` line was really done by some round; two ``end``
lines for one task are a duplicate execution (at-least-once delivery). Lines are JSON,
written with one ``write()`` each on an ``O_APPEND`` descriptor, so concurrent agents never
interleave within a line.

A task description may hold directives (split on ``;``):

    flood BYTES     write BYTES bytes of output to stdout (log rotation tests)
    fail            exit 1 after the start line (a failing round)
    sleep SECONDS   sleep exactly SECONDS instead of the random work
    hang            sleep until killed

Options:

    --ledger PATH           the ledger file (required; also marks our processes' argv)
    --work MIN MAX          random work time in seconds (default 0.05 0.3)
    --child-prob P          chance that the work runs in a child process we wait for
    --background-prob P     chance of a child left running in our process group at exit
                            (the runtime must sweep it)
    --setsid-prob P         chance of a child that calls setsid() (escapes the process group)
    --child SECONDS         internal: be such a child (sleep SECONDS, then exit)

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time


def append(ledger: str, **fields: object) -> None:
    """One JSON line, one write() on an O_APPEND descriptor (atomic position update)."""
    line = (json.dumps(fields, separators=(",", ":")) + "\n").encode()
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def tasks_in(prompt: str) -> list[tuple[str, str]]:
    """(task id, description) for every task block of the prompt, in order."""
    found: list[tuple[str, str]] = []
    task_id: str | None = None
    for raw in prompt.splitlines():
        line = raw.strip()
        if line.startswith("Task ID:"):
            task_id = line.removeprefix("Task ID:").strip() or None
        elif line.startswith("Description:") and task_id:
            found.append((task_id, line.partition(":")[2].strip()))
            task_id = None
    return found


def child_argv(args: argparse.Namespace, seconds: float) -> list[str]:
    return [
        sys.executable,
        os.path.abspath(__file__),
        "--ledger",
        args.ledger,
        "--child",
        f"{seconds:.3f}",
    ]


def flood(size: int) -> None:
    chunk = b"x" * 1023 + b"\n"
    out = sys.stdout.buffer
    while size > 0:
        out.write(chunk[: min(size, len(chunk))])
        size -= len(chunk)
    out.flush()


def work(args: argparse.Namespace, rng: random.Random, directives: list[str]) -> int:
    """Do the round's work; returns the exit code."""
    seconds = rng.uniform(*args.work)
    for directive in directives:
        word, _, rest = directive.partition(" ")
        if word == "flood":
            flood(int(rest))
        elif word == "fail":
            print("failing on purpose", file=sys.stderr, flush=True)
            return 1
        elif word == "sleep":
            seconds = float(rest)
        elif word == "hang":
            seconds = float("inf")
    if rng.random() < args.background_prob:
        # Left running in our process group: the runtime's end-of-round sweep must kill it.
        subprocess.Popen(child_argv(args, 30), stdin=subprocess.DEVNULL)
    if rng.random() < args.setsid_prob:
        # Leaves our process group: only a tree-wide tracker (marker, cgroup) finds it.
        subprocess.Popen(child_argv(args, 30), stdin=subprocess.DEVNULL, start_new_session=True)
    if seconds == float("inf"):
        while True:
            time.sleep(3600)
    if rng.random() < args.child_prob:
        subprocess.run(child_argv(args, seconds), stdin=subprocess.DEVNULL, check=False)
    else:
        time.sleep(seconds)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--work", nargs=2, type=float, default=(0.05, 0.3), metavar=("MIN", "MAX"))
    parser.add_argument("--child-prob", type=float, default=0.2)
    parser.add_argument("--background-prob", type=float, default=0.0)
    parser.add_argument("--setsid-prob", type=float, default=0.0)
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        time.sleep(args.child)
        return 0
    prompt = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    tasks = tasks_in(prompt)
    pid = os.getpid()
    agent = os.environ.get("TT_AGENT_NAME", "")
    rng = random.Random()
    for task_id, _ in tasks:
        append(args.ledger, ev="start", task=task_id, pid=pid, agent=agent, t=time.time())
    directives = [d.strip() for _, desc in tasks for d in desc.split(";") if d.strip()]
    code = work(args, rng, directives)
    if code:
        return code
    for task_id, _ in tasks:
        append(args.ledger, ev="end", task=task_id, pid=pid, agent=agent, t=time.time())
    print(f"ledger: {len(tasks)} task(s) done by pid {pid}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
