"""`tt demo`: the main job, on its own embedded Redis, from an empty environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_runs_a_real_town_and_cleans_up(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TT_", "REDIS_URL"))}
    env["TT_HOME"] = str(tmp_path / "home")
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "tinytown", "demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    assert "[assign] alice" in out and "[complete]" in out  # progress, as it happened
    assert "Summary" in out
    summary = out.split("Summary", 1)[1]
    assert summary.count("completed") == 4 and "failed" not in summary
    assert "supervisor mail:" in summary
    # the throw-away town and its redis-server are gone
    assert not any(p.name.startswith("tt-demo-") for p in tmp_path.iterdir())
