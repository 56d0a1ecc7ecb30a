"""The ``fake_clis`` fixture: the presets find the fakes by their real names."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tinytown.services.config import TownConfig


def test_presets_run_the_fakes_found_on_path(fake_clis: Path, tmp_path: Path) -> None:
    for name in ("claude", "codex", "gemini"):
        assert shutil.which(name) == str(fake_clis / name)
    spec = TownConfig(tmp_path, {"name": "t"}).cli_spec("claude")
    done = subprocess.run(
        spec.round_argv(None, False, None),
        input="Description: print on path",
        capture_output=True,
        text=True,
        timeout=20,
    )
    report = spec.read(done.returncode, False, done.stdout, done.stderr)
    assert report.ok and report.answer.startswith("on path")
    calls = (fake_clis / "calls.jsonl").read_text().splitlines()
    assert [json.loads(line)["cli"] for line in calls] == ["claude"]
