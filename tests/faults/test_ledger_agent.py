"""The ledger agent (actors/ledger_agent.py) the soak relies on: one start and one end
line per task, nothing for a failed round, output floods as asked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.faults.faultkit import LEDGER_AGENT

PROMPT = """# Tinytown: round 1 for agent w (Ann), town t
## Tasks
### Task 11111111-1111-1111-1111-111111111111
Task ID: 11111111-1111-1111-1111-111111111111
Description: work; a
### Task 22222222-2222-2222-2222-222222222222
Task ID: 22222222-2222-2222-2222-222222222222
Description: {second}
"""


def run(tmp_path: Path, second: str) -> tuple[subprocess.CompletedProcess[bytes], list[dict]]:
    ledger = tmp_path / "ledger.jsonl"
    result = subprocess.run(
        [sys.executable, str(LEDGER_AGENT), "--ledger", str(ledger), "--work", "0", "0.01"],
        input=PROMPT.format(second=second).encode(),
        capture_output=True,
        timeout=30,
    )
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    return result, [json.loads(line) for line in lines]


def test_each_task_gets_a_start_and_an_end_line(tmp_path: Path) -> None:
    result, entries = run(tmp_path, "flood 5000")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) >= 5000
    assert [(e["ev"], e["task"][0]) for e in entries] == [
        ("start", "1"),
        ("start", "2"),
        ("end", "1"),
        ("end", "2"),
    ]
    assert {e["pid"] for e in entries} == {entries[0]["pid"]}


def test_a_failing_round_writes_no_end_line(tmp_path: Path) -> None:
    result, entries = run(tmp_path, "fail")
    assert result.returncode == 1
    assert [e["ev"] for e in entries] == ["start", "start"]
