"""scripts/bench.py keeps working: its quick mode runs and reports every figure.

Timings and targets are deliberately not asserted (performance is reported by the bench,
not judged by tests; see docs/performance.md).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "bench.py"


def _registry() -> ModuleType:
    """scripts/bench/figures.py, the one place the figure keys are written."""
    spec = importlib.util.spec_from_file_location(
        "bench_figures", REPO / "scripts" / "bench" / "figures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


_REGISTRY = _registry()
FIGURES = _REGISTRY.FIGURES
GROUPS = _REGISTRY.GROUPS


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.timeout(300)
def test_quick_bench_reports_every_figure(tmp_path: Path) -> None:
    # Without the bench extra (the peer queues) only the peer baseline is missing; the rest
    # runs, and each missing peer is named in the details.
    peers = ("rq", "dramatiq", "saq", "streaq", "taskiq_redis")
    have_peer = any(importlib.util.find_spec(name) is not None for name in peers)
    env = dict(os.environ)
    env.pop("REDIS_URL", None)  # the bench starts its own server
    env["TT_HOME"] = str(tmp_path / "tt-home")
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    report = json.loads(done.stdout)
    assert report["quick"] is True
    assert {"nproc", "cpu", "python", "redis"} <= set(report["machine"])
    figures = {f["key"]: f for f in report["figures"]}
    assert list(figures) == list(FIGURES)  # every figure, in the registry's order
    for key, figure in figures.items():
        assert figure["error"] is None, (key, figure["error"])
        assert _number(figure["tinytown"]), (key, figure)
        if key == "tasks_per_s":
            # every peer is either measured or skipped with a note saying why
            measured = set(figure["details"]["peers_per_s"])
            skipped = set(figure["details"]["peers_skipped"])
            assert measured | skipped == {"rq", "dramatiq", "saq", "streaq", "taskiq"}
            assert all(_number(r) for r in figure["details"]["peers_per_s"].values())
            if not have_peer:
                assert figure["baseline"] is None and figure["met"] is None
                continue
        if key.startswith("scale_"):  # the curve: a value per size, smallest first
            curve = figure["details"]["by_agents"]
            assert [int(n) for n in curve] == sorted(int(n) for n in curve), (key, curve)
            assert len(curve) >= 2 and all(_number(v) for v in curve.values()), (key, curve)
            smallest = curve[min(curve, key=int)]  # rounded to 4 decimals in the details
            assert math.isclose(figure["baseline"], smallest, rel_tol=1e-3, abs_tol=1e-4), key
        assert _number(figure["baseline"]), (key, figure)
        # the ratio is undefined only when the baseline is exactly zero (e.g. idle CPU)
        assert _number(figure["ratio"]) or figure["baseline"] == 0, (key, figure)
        assert figure["met"] in (True, False, None)
        assert figure["target"] and figure["baseline_label"]


def test_every_group_is_a_module_and_an_only_choice() -> None:
    """The registry drives ``--only`` and names the module of each group."""
    done = subprocess.run(
        [sys.executable, str(BENCH), "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"run only these groups: {', '.join(GROUPS)}" in " ".join(done.stdout.split())
    for name in GROUPS:
        assert (REPO / "scripts" / "bench" / f"{name}.py").is_file()
    bad = subprocess.run(
        [sys.executable, str(BENCH), "--only", "nothing"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "invalid choice: 'nothing'" in bad.stderr
