#!/usr/bin/env python3
"""A scripted stand-in for an AI coding CLI, driven by a tiny directive language.

Tinytown runs it like any other agent CLI: once per round, with the round's prompt on stdin.
Instead of thinking, it obeys the *directives* written in the prompt's ``Description:`` lines
(tasks) and ``Message:`` lines (other messages), in the order they appear. This makes agent
behaviour predictable, which is what the tests and the demo need. Standard library only.

Each such line is split on ``;`` into directives; each directive is ``WORD [ARGS...]`` (the
word is separated from its arguments by the first space). Empty directives are skipped.

    print TEXT          print TEXT to stdout
    stderr TEXT         print TEXT to stderr
    sleep SECONDS       sleep (fractions allowed)
    fail [CODE]         print "failing" to stderr and exit with CODE (default 1) at once
    hang                sleep forever (until killed)
    waitfile PATH       wait until PATH exists (a test's go-ahead: no timing luck)
    grandchild SECONDS  start `sleep SECONDS` as a child in our process group, without waiting;
                        prints "grandchild-pid <pid>" (the child inherits stdout and stderr)
    pid                 print "agent-pid <pid>"
    send TO TEXT        run `tt send TO TEXT` and print its output
    ask TO TEXT         run `tt send TO --query TEXT`
    complete [RESULT]   run `tt task complete <task-id> --result RESULT` (default "done")
    failtask [REASON]   run `tt task fail <task-id> --reason REASON` (default "failed")
    spawn NAME          run `tt spawn NAME --cli scripted`
    env NAME            print "NAME=<value>" (empty if unset)
    cwd                 print "cwd=<current directory>"
    echo-prompt         print the whole prompt
    anything else       printed as is, so "Build the API" prints "Build the API"

A directive whose arguments do not parse (``sleep soon``, ``fail badly``) is printed as is too.
<task-id> is the ``Task ID:`` of the task block the directive came from, else $TT_TASK_ID.
The ``tt`` command is $TT_BIN if set (a path, or a command line such as ``python -m x``), else
``tt`` on PATH. If a ``tt`` command fails, its stderr is copied and the agent exits with its
code. At the end the agent prints "done: N directive(s)" and exits 0.

Example task description: ``print hello; sleep 0.5; send supervisor started; complete ok``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from typing import TextIO


def say(text: str, stream: TextIO | None = None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def tt_command() -> list[str]:
    tt_bin = os.environ.get("TT_BIN", "tt")
    return [tt_bin] if os.path.exists(tt_bin) else shlex.split(tt_bin)


def run_tt(*args: str) -> None:
    try:
        result = subprocess.run(
            [*tt_command(), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
    except OSError as error:
        say(f"failing: cannot run tt: {error}", sys.stderr)
        sys.exit(127)
    if result.stdout:
        say(result.stdout.rstrip("\n"))
    if result.returncode != 0:
        say(result.stderr.rstrip("\n"), sys.stderr)
        say(f"failing: tt {' '.join(args)} exited with {result.returncode}", sys.stderr)
        sys.exit(result.returncode)


def task_id_or_exit(task_id: str | None) -> str:
    task_id = task_id or os.environ.get("TT_TASK_ID")
    if not task_id:
        say("failing: no task id (no Task ID: line and no TT_TASK_ID)", sys.stderr)
        sys.exit(2)
    return task_id


def execute(text: str, task_id: str | None, prompt: str) -> None:
    word, _, rest = text.partition(" ")
    rest = rest.strip()
    if word == "print":
        say(rest)
    elif word == "stderr":
        say(rest, sys.stderr)
    elif word == "sleep":
        time.sleep(float(rest))
    elif word == "fail":
        code = int(rest) if rest else 1
        say("failing", sys.stderr)
        sys.stdout.flush()
        sys.exit(code)
    elif word == "hang":
        while True:
            time.sleep(3600)
    elif word == "waitfile" and rest:
        while not os.path.exists(rest):
            time.sleep(0.01)
    elif word == "grandchild":
        float(rest)  # validate before starting anything
        child = subprocess.Popen(["sleep", rest], stdin=subprocess.DEVNULL)
        say(f"grandchild-pid {child.pid}")
    elif word == "pid":
        say(f"agent-pid {os.getpid()}")
    elif word in ("send", "ask") and " " in rest:
        to, _, message = rest.partition(" ")
        run_tt("send", to, *(["--query"] if word == "ask" else []), message.strip())
    elif word == "complete":
        run_tt("task", "complete", task_id_or_exit(task_id), "--result", rest or "done")
    elif word == "failtask":
        run_tt("task", "fail", task_id_or_exit(task_id), "--reason", rest or "failed")
    elif word == "spawn" and rest:
        run_tt("spawn", rest, "--cli", "scripted")
    elif word == "env" and rest:
        say(f"{rest}={os.environ.get(rest, '')}")
    elif word == "cwd" and not rest:
        say(f"cwd={os.getcwd()}")
    elif word == "echo-prompt" and not rest:
        say(prompt)
    else:
        say(text)


def directives(prompt: str) -> list[tuple[str, str | None]]:
    """The (directive, task id) pairs of the prompt, in order."""
    found: list[tuple[str, str | None]] = []
    task_id: str | None = None
    for raw in prompt.splitlines():
        line = raw.strip()
        if line.startswith("### Task "):
            task_id = line.removeprefix("### Task ").strip() or None
        elif line.startswith("### "):
            task_id = None
        elif line.startswith("Task ID:"):
            task_id = line.removeprefix("Task ID:").strip() or None
        elif line.startswith(("Description:", "Message:")):
            body = line.partition(":")[2]
            found.extend((part.strip(), task_id) for part in body.split(";") if part.strip())
    return found


def main() -> int:
    prompt = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    todo = directives(prompt)
    for text, task_id in todo:
        try:
            execute(text, task_id, prompt)
        except ValueError:
            say(text)
    say(f"done: {len(todo)} directive(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
