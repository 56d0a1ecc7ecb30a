#!/usr/bin/env python3
"""A scripted stand-in for a coding CLI that edits files and commits them with git.

Runs like ``scripted_agent.py`` (once per round, the prompt on stdin) and obeys the
directives of its prompt's ``Description:`` and ``Message:`` lines, split on ``;``:

    write PATH TEXT     write TEXT and a newline to PATH (relative to the working directory)
    append PATH TEXT    add TEXT and a newline to the end of PATH
    commit MESSAGE      git add -A, then git commit -m MESSAGE (no shell)
    fail [CODE]         exit with CODE (default 1) at once
    env NAME            print "NAME=<value>"
    cwd                 print "cwd=<current directory>"
    anything else       printed as is

Standard library only; ``git`` must be on PATH. At the end it prints "done: N directive(s)".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_git(*args: str) -> None:
    result = subprocess.run(
        ["git", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        print(result.stderr.rstrip("\n"), file=sys.stderr, flush=True)
        sys.exit(result.returncode)


def execute(text: str) -> None:
    word, _, rest = text.partition(" ")
    rest = rest.strip()
    if word in ("write", "append") and " " in rest:
        path, _, content = rest.partition(" ")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w" if word == "write" else "a") as fh:
            fh.write(content + "\n")
    elif word == "commit" and rest:
        run_git("add", "-A")
        run_git("commit", "-q", "-m", rest)
    elif word == "fail":
        print("failing", file=sys.stderr, flush=True)
        sys.exit(int(rest) if rest.isdigit() else 1)
    elif word == "env" and rest:
        print(f"{rest}={os.environ.get(rest, '')}", flush=True)
    elif word == "cwd":
        print(f"cwd={os.getcwd()}", flush=True)
    else:
        print(text, flush=True)


def main() -> int:
    prompt = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    todo = []
    for raw in prompt.splitlines():
        line = raw.strip()
        if line.startswith(("Description:", "Message:")):
            body = line.partition(":")[2]
            todo.extend(part.strip() for part in body.split(";") if part.strip())
    for text in todo:
        execute(text)
    print(f"done: {len(todo)} directive(s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
