"""``fake_clis``: the fake claude, codex and gemini on PATH for this test (see
tests/fakeclis.py). The integrator may promote it to tests/conftest.py as it is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakeclis import install_fake_clis


@pytest.fixture
def fake_clis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of ``claude``/``codex``/``gemini`` shims put first on PATH (for this
    process and the ones it starts); each run appends its argv to ``calls.jsonl`` beside
    it (FAKE_CLI_LOG). Returns that directory."""
    bin_dir = tmp_path / "fake-clis"
    install_fake_clis(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_CLI_LOG", str(bin_dir / "calls.jsonl"))
    for name in ("FAKE_CLI_AS_ROOT", "FAKE_CLI_NOT_LOGGED_IN", "IS_SANDBOX"):
        monkeypatch.delenv(name, raising=False)
    return bin_dir
