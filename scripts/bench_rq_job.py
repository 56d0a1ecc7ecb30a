"""The RQ job of scripts/bench.py: the same trivial subprocess a Tinytown round runs."""

import subprocess


def run_true() -> int:
    return subprocess.run(["true"], check=True).returncode
