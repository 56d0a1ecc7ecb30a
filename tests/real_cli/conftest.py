"""The real agent CLIs (claude, codex, gemini), when installed: ``bash
scripts/install-real-clis.sh`` puts them in ``.real-clis/node_modules/.bin``; otherwise
they are looked for on PATH. Without all three the suite is skipped, saying why.

The tests run them as a new user would on a machine without credentials: a private HOME
(no login, no settings) and no API keys in the environment. No test makes a paid call:
without a login nothing reaches a model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALLED = REPO / ".real-clis" / "node_modules" / ".bin"
PROGRAMS = ("claude", "codex", "gemini")
#: Variables that would log a CLI in (or point it at a service): never passed to the tests.
CREDENTIALS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CODEX_API_KEY",
    "OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_GCA",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "IS_SANDBOX",
)


def find_real_clis() -> tuple[Path | None, str]:
    """The folder holding all three programs, or None and why not."""
    for folder in (
        INSTALLED,
        *(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p),
    ):
        if all(os.access(folder / name, os.X_OK) for name in PROGRAMS):
            return folder, ""
    missing = [name for name in PROGRAMS if shutil.which(name) is None]
    return None, (
        f"the real {', '.join(missing) or 'CLIs'} not found in {INSTALLED} or on PATH"
        " (bash scripts/install-real-clis.sh installs them)"
    )


FOLDER, WHY = find_real_clis()
#: Every test module of the suite carries this mark (``pytestmark = needs_real_clis``).
needs_real_clis = pytest.mark.skipif(FOLDER is None, reason=WHY)


@pytest.fixture
def real_env(
    tt_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment for `tt` (and the runtime's rounds): the real CLIs first on PATH, a
    fresh HOME, no credentials."""
    if FOLDER is None:
        pytest.skip(WHY)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in tt_env.items() if k not in CREDENTIALS}
    env["PATH"] = f"{FOLDER}{os.pathsep}{env.get('PATH', os.defpath)}"
    env["HOME"] = str(home)
    for name, value in (("PATH", env["PATH"]), ("HOME", str(home))):
        monkeypatch.setenv(name, value)
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)
    return env
