"""The fake agent CLIs (actors/fake_claude.py, fake_codex.py, fake_gemini.py) installed as
``claude``, ``codex`` and ``gemini``: put the directory on PATH and the presets run them."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

ACTORS = Path(__file__).resolve().parents[1] / "actors"
FAKES = {"claude": "fake_claude.py", "codex": "fake_codex.py", "gemini": "fake_gemini.py"}


def install_fake_clis(bin_dir: Path) -> None:
    """Write executable shims ``claude``, ``codex`` and ``gemini`` into ``bin_dir`` (made
    if missing), each running its fake with the current interpreter."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, script in FAKES.items():
        shim = bin_dir / name
        command = f"{shlex.quote(sys.executable)} {shlex.quote(str(ACTORS / script))}"
        shim.write_text(f'#!/bin/sh\nexec {command} "$@"\n', encoding="utf-8")
        shim.chmod(0o755)
