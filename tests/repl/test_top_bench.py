"""scripts/bench_top.py (what ``tt top`` costs, docs/dashboard.md) keeps working: run small,
it opens the dashboard on a busy town, sees every change drawn, and reports numbers.
Nothing here asserts a timing: the numbers are the script's to report."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_top.py"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_the_dashboard_measurement_runs_on_a_small_busy_town(
    tmp_path: Path, tt_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # tt_env: the session's Redis and a private TT_HOME, in this process's environment
    spec = importlib.util.spec_from_file_location("bench_top", SCRIPT)
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_top", bench)
    spec.loader.exec_module(bench)
    result = bench.run(agents=20, rate=20, seconds=2, idle=0.5, root=tmp_path / "town")
    assert "agents 20" in result["screen"] or "agent0019 (" in result["screen"]
    assert result["changes_per_s"] > 0
    assert result["busy_frames_per_s"] > 0  # it redrew while the town changed
    for key in ("idle_cpu", "busy_cpu", "idle_frames_per_s"):
        assert result[key] >= 0
