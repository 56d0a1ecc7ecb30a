"""Real git repositories for the workspace tests: a town whose root is a fresh repository.

Git's identity and config come from the test's own temporary HOME (never the user's).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tinytown.services.config import TownConfig

REPO = Path(__file__).resolve().parents[1]
GIT_AGENT = REPO / "actors" / "git_agent.py"

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git_env(monkeypatch: pytest.MonkeyPatch, home: Path, env: dict[str, str] | None) -> None:
    """Point git at a private HOME and a fixed identity, in this process and in ``env``
    (the environment of ``tt`` subprocesses)."""
    home.mkdir(parents=True, exist_ok=True)
    values = {**IDENTITY, "HOME": str(home)}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
        if env is not None:
            env[key] = value


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd``; its stdout (raises on failure, with git's stderr)."""
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def make_repo(root: Path, files: dict[str, str] | None = None) -> str:
    """Make the town root a git repository on branch ``main`` with one commit holding
    ``files`` (plus the town's own files); returns the commit."""
    config = TownConfig.load(root)
    config.data["agent_clis"]["gitagent"] = {"command": f"{sys.executable} {GIT_AGENT}"}
    config.data["default_cli"] = "gitagent"
    config.save()
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text(".tt/\n")
    for name, text in (files or {"shared.txt": "one\ntwo\nthree\n"}).items():
        (root / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return git(root, "rev-parse", "HEAD")


def commit_file(cwd: Path, name: str, text: str, message: str) -> str:
    (cwd / name).write_text(text)
    git(cwd, "add", name)
    git(cwd, "commit", "-q", "-m", message)
    return git(cwd, "rev-parse", "HEAD")
