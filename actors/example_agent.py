#!/usr/bin/env python3
"""An example custom agent: copy this file to plug your own program into Tinytown.

Any executable can be an agent. Tinytown runs it once per *round* and gives it:

* the round's prompt on **stdin** (read it all). For each task assigned to the agent the prompt
  holds a block::

      ### Task <task-uuid>
      Task ID: <task-uuid>
      Description: <description on one line>

  and for other messages (questions, info, ...)::

      ### Message <kind> from <sender>
      Message: <text on one line>

* the **current directory** set to the town root;
* the **environment** variables
  ``TT_TOWN`` (town name), ``TT_TOWN_DIR`` (town root directory),
  ``TT_AGENT_ID`` (this agent's UUID), ``TT_AGENT_NAME`` (this agent's name),
  ``TT_TASK_ID`` (the current task, if the round is about one) and
  ``REDIS_URL`` (the town's Redis), so that the ``tt`` command works from inside the agent.

The agent reports back with the ``tt`` command line (``tt task complete``, ``tt task fail``,
``tt send``, ...). Its exit status decides how the round ends: exit 0 means the round
succeeded (its task is completed with the tail of the agent's stdout as the result, unless the
agent already completed or failed it itself); a non-zero exit means the round failed (the task
is failed with the tail of stderr as the reason).

This example "works" on each task by writing a markdown note ``notes/<task-id>.md`` with the
task's description, then completes the task and tells the supervisor. Standard library only;
the ``tt`` command is taken from ``$TT_BIN`` if set, else ``tt`` on PATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def find_tasks(prompt: str) -> list[tuple[str, str]]:
    """The (task id, description) pairs of the prompt, in order."""
    tasks: list[tuple[str, str]] = []
    task_id = None
    for line in prompt.splitlines():
        line = line.strip()
        if line.startswith("Task ID:"):
            task_id = line.removeprefix("Task ID:").strip()
        elif line.startswith("Description:") and task_id:
            tasks.append((task_id, line.removeprefix("Description:").strip()))
            task_id = None
    return tasks


def tt(*args: str) -> None:
    """Run a ``tt`` command; if it fails, exit non-zero so that the round fails."""
    code = subprocess.run([os.environ.get("TT_BIN", "tt"), *args]).returncode
    if code != 0:
        print(f"tt {args[0]} failed with exit code {code}", file=sys.stderr)
        sys.exit(code)


def main() -> int:
    prompt = sys.stdin.read()
    name = os.environ.get("TT_AGENT_NAME", "agent")
    tasks = find_tasks(prompt)
    if not tasks:
        print("no tasks in this round")
        return 0
    for task_id, description in tasks:
        note = Path("notes") / f"{task_id}.md"
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(f"# Task {task_id}\n\nWorked on by {name}.\n\n{description}\n")
        print(f"wrote {note}", flush=True)
        tt("task", "complete", task_id, "--result", f"wrote notes/{task_id}.md")
        tt("send", "supervisor", "--info", f"{name} finished {task_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
