"""`tt doctor` and the root notice of `tt spawn`, through the command line, against
stand-in CLIs that answer as the real ones (tests/services/doctor_shims.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli.clihelp import RunIn
from tests.services.doctor_shims import CLEARED_ENV, install_shims
from tinytown.services.town import Town

ROOT = os.geteuid() == 0


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    """Overrides for `tt`: the stand-ins first on PATH, a private HOME, no keys."""
    shims = install_shims(tmp_path / "bin")
    out: dict[str, str | None] = {
        "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "FAKE_PAID_CALLS": str(tmp_path / "paid-calls"),
        "FAKE_EUID": str(os.geteuid()),
    }
    for name in CLEARED_ENV:
        out[name] = None
    return out


@pytest.fixture
async def three(
    town_dir: Path, env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The town with ann (claude), cody (codex) and gem (gemini), spawned through the API
    (quicker than three `tt` processes; `tt spawn` has its own test below)."""
    monkeypatch.setenv("PATH", str(env["PATH"]))
    async with await Town.connect(town_dir) as town:
        for name, cli in (("ann", "claude"), ("cody", "codex"), ("gem", "gemini")):
            await town.spawn_agent(name, cli)
    return town_dir


async def test_doctor_reports_each_cli_not_logged_in(
    tt_in: RunIn, three: Path, env: dict[str, str | None], tmp_path: Path
) -> None:
    done = tt_in("doctor", cwd=three, env=env)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert "ok    town redis: Redis answers at" in lines[0]
    assert lines[1].startswith("warn  town runtime: not running")
    assert any(ln.startswith("FAIL  claude (ann) login: not logged in") for ln in lines)
    assert any(ln.startswith("FAIL  codex (cody) login: Not logged in") for ln in lines)
    assert any(ln.startswith("FAIL  gemini (gem) login: no auth method") for ln in lines)
    assert any(
        ln.startswith("ok    codex (cody) installed: ") and "codex-cli 0.171.0" in ln
        for ln in lines
    )
    assert lines[-1].endswith("agents cannot work until the FAIL lines are fixed.")
    options = next(
        ln
        for ln in lines
        if ln.startswith(("ok    claude (ann) options", "FAIL  claude (ann) options"))
    )
    assert options.startswith("FAIL" if ROOT else "ok"), options  # claude refuses as root
    assert not (tmp_path / "paid-calls").exists()

    as_json = tt_in("doctor", "--json", cwd=three, env=env)
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and "failed" in report["summary"]
    logins = {c["subject"]: c["level"] for c in report["checks"] if c["check"] == "login"}
    assert logins == {"claude (ann)": "FAIL", "codex (cody)": "FAIL", "gemini (gem)": "FAIL"}


async def test_doctor_passes_when_everything_is_set_up(
    tt_in: RunIn, three: Path, env: dict[str, str | None]
) -> None:
    ready = {**env, "FAKE_LOGGED_IN": "1", "GEMINI_API_KEY": "k", "IS_SANDBOX": "1"}
    done = tt_in("doctor", cwd=three, env=ready)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout
    assert done.stdout.splitlines()[-1].endswith("nothing blocks the agents' work.")


async def test_doctor_for_some_agents_and_bad_input(
    tt_in: RunIn, three: Path, env: dict[str, str | None]
) -> None:
    done = tt_in("doctor", "cody", "--json", cwd=three, env=env)
    subjects = {c["subject"] for c in json.loads(done.stdout)["checks"]}
    assert subjects == {"town", "codex (cody)"}
    unknown = tt_in("doctor", "nobody", cwd=three, env=env)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.startswith("tt: ") and len(unknown.stderr.splitlines()) == 1
    usage = tt_in("doctor", "--timeout", "0", cwd=three, env=env)
    assert usage.returncode == 2 and "positive number of seconds" in usage.stderr


def test_doctor_with_redis_unreachable(
    tt_in: RunIn, town_dir: Path, env: dict[str, str | None], tmp_path: Path
) -> None:
    gone = {**env, "REDIS_URL": f"unix://{tmp_path}/no-redis.sock"}
    done = tt_in("doctor", cwd=town_dir, env=gone)
    assert done.returncode == 1
    first = done.stdout.splitlines()[0]
    assert first.startswith("FAIL  town redis: "), done.stdout
    # The agents cannot be read: default_cli (the scripted test agent) is checked.
    assert "scripted (default_cli) installed" in done.stdout


def test_doctor_outside_a_town(tt_in: RunIn, tmp_path: Path, env: dict[str, str | None]) -> None:
    done = tt_in("doctor", cwd=tmp_path, env={**env, "TT_TOWN_DIR": None})
    assert done.returncode == 1 and done.stderr.startswith("tt: ")


def test_spawn_says_what_to_do_as_root(
    tt_in: RunIn, town_dir: Path, env: dict[str, str | None]
) -> None:
    spawned = tt_in("spawn", "ann", "--cli", "claude", cwd=town_dir, env=env)
    assert spawned.returncode == 0
    if ROOT:
        notice = spawned.stderr
        assert "tt: warning: running as root" in notice
        for words in ("root/sudo", "claude-safe", "non-root user", "IS_SANDBOX=1"):
            assert words in notice
    else:
        assert "running as root" not in spawned.stderr
    safe = tt_in("spawn", "bob", "--cli", "claude-safe", cwd=town_dir, env=env)
    assert safe.returncode == 0 and "running as root" not in safe.stderr
    sandbox = tt_in("spawn", "cy", "--cli", "claude", cwd=town_dir, env={**env, "IS_SANDBOX": "1"})
    assert sandbox.returncode == 0 and "running as root" not in sandbox.stderr
