#!/usr/bin/env python3
"""A test CLI that leaves a process tree behind: for the process-tree tests.

Reads (and ignores) the prompt. Unless the file named by $TREE_RELEASE exists, it starts

* a grandchild in its own process group          (prints ``group-pid N``),
* a grandchild that called ``setsid()``           (prints ``setsid-pid N``),
* with ``--escape``, a grandchild that called ``setsid()`` with an empty environment
  (prints ``escaped-pid N``: the documented limit of what the runtime can find),

prints ``cli-pid N`` and sleeps for a minute. If the file exists it appends
``done $TT_TASK_ID`` to $TREE_LEDGER (when set) and exits 0 at once. Standard library only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def main() -> int:
    sys.stdin.read()
    release = os.environ.get("TREE_RELEASE", "")
    if release and os.path.exists(release):
        ledger = os.environ.get("TREE_LEDGER")
        if ledger:
            with open(ledger, "a") as fh:
                fh.write(f"done {os.environ.get('TT_TASK_ID', '')}\n")
        print("released", flush=True)
        return 0
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
    group = subprocess.Popen(SLEEP, **quiet)
    setsid = subprocess.Popen(SLEEP, start_new_session=True, **quiet)
    print(f"group-pid {group.pid}", flush=True)
    print(f"setsid-pid {setsid.pid}", flush=True)
    if "--escape" in sys.argv:
        escaped = subprocess.Popen(SLEEP, start_new_session=True, env={}, **quiet)
        print(f"escaped-pid {escaped.pid}", flush=True)
    print(f"cli-pid {os.getpid()}", flush=True)
    time.sleep(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
