"""The doctor's checks through the API, against stand-in CLIs that answer as the real ones."""

from __future__ import annotations

import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.services.doctor_shims import CLEARED_ENV, install_shims
from tinytown.errors import NotFoundError
from tinytown.services.config import TownConfig
from tinytown.services.doctor import Check, Level, Report, diagnose, diagnose_offline, root_notice
from tinytown.services.doctor.clis import probe_safe
from tinytown.services.doctor.probe import probe
from tinytown.services.mcp import wiring as mcpwiring
from tinytown.services.town import Town


@pytest.fixture
def shims(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """claude, codex and gemini stand-ins first on PATH; a private HOME; no keys."""
    folder = install_shims(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FAKE_PAID_CALLS", str(tmp_path / "paid-calls"))
    monkeypatch.setenv("FAKE_EUID", "1000")  # as the doctor is told (euid=1000) below
    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    return folder


def _by(report: Report, subject_start: str, name: str) -> Check:
    found = [c for c in report.checks if c.subject.startswith(subject_start) and c.name == name]
    assert len(found) == 1, (subject_start, name, report.checks)
    return found[0]


def _no_paid_calls(shims: Path) -> None:
    calls = shims.parent / "paid-calls"
    assert not calls.exists(), calls.read_text()


async def _three(town: Town) -> None:
    for name, cli in (("ann", "claude"), ("cody", "codex"), ("gem", "gemini")):
        await town.agents.spawn(name, cli)


async def test_not_logged_in_is_reported_for_each_cli_without_a_paid_call(
    town: Town, shims: Path
) -> None:
    await _three(town)
    report = await diagnose(town, euid=1000)
    for subject, version in (
        ("claude (ann)", "2.1.197 (Claude Code)"),
        ("codex (cody)", "codex-cli 0.171.0"),
        ("gemini (gem)", "0.61.0"),
    ):
        installed = _by(report, subject, "installed")
        assert installed.level is Level.OK and version in installed.text
        assert str(shims) in installed.text
        assert _by(report, subject, "login").level is Level.FAIL
    assert "claude auth login" in _by(report, "claude", "login").text
    assert "Not logged in" in _by(report, "codex", "login").text
    assert "GEMINI_API_KEY" in _by(report, "gemini", "login").text
    assert _by(report, "claude", "options").level is Level.OK
    assert _by(report, "codex", "options").level is Level.OK
    trust = _by(report, "gemini", "options")  # the preset's yolo needs a trusted folder
    assert trust.level is Level.WARN and "as 'default'" in trust.text
    assert _by(report, "town", "redis").level is Level.OK
    assert _by(report, "town", "runtime").level is Level.WARN  # no runtime in this test
    assert report.blocked and "3 failed" in report.summary()
    assert report.as_dict()["ok"] is False
    _no_paid_calls(shims)


async def test_logged_in_clis_and_keys_pass(
    town: Town, shims: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _three(town)
    monkeypatch.setenv("FAKE_LOGGED_IN", "1")
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    report = await diagnose(town, euid=1000)
    assert _by(report, "claude", "login").text == "logged in (api_key, ANTHROPIC_API_KEY)."
    assert "Logged in using an API key" in _by(report, "codex", "login").text
    assert "GEMINI_API_KEY" in _by(report, "gemini", "login").text
    assert all(_by(report, s, "login").level is Level.OK for s in ("claude", "codex", "gemini"))
    assert not report.blocked, report.checks
    _no_paid_calls(shims)


async def test_gemini_auth_from_its_settings_file(town: Town, shims: Path, tmp_path: Path) -> None:
    await town.agents.spawn("gem", "gemini")
    settings = tmp_path / "home" / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text("{not json")
    assert _by(await diagnose(town), "gemini", "login").level is Level.FAIL
    settings.write_text(json.dumps({"security": {"auth": {"selectedType": "gemini-api-key"}}}))
    login = _by(await diagnose(town), "gemini", "login")
    assert login.level is Level.OK and "gemini-api-key" in login.text


async def test_codex_key_in_the_environment_is_a_warning_not_a_failure(
    town: Town, shims: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await town.agents.spawn("cody", "codex")
    monkeypatch.setenv("CODEX_API_KEY", "k")
    login = _by(await diagnose(town), "codex", "login")
    assert login.level is Level.WARN and "CODEX_API_KEY" in login.text


async def test_root_and_the_permission_bypass(
    town: Town, shims: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await town.agents.spawn("ann", "claude")
    await town.agents.spawn("safe", "claude-safe")
    monkeypatch.setenv("FAKE_EUID", "0")
    as_root = await diagnose(town, euid=0)
    refused = _by(as_root, "claude (ann)", "options")
    assert refused.level is Level.FAIL
    assert "root/sudo" in refused.text and "claude-safe" in refused.text
    assert "IS_SANDBOX=1" in refused.text
    assert _by(as_root, "claude-safe (safe)", "options").level is Level.OK
    monkeypatch.setenv("FAKE_EUID", "1000")
    assert _by(await diagnose(town, euid=1000), "claude (ann)", "options").level is Level.OK
    monkeypatch.setenv("FAKE_EUID", "0")
    monkeypatch.setenv("IS_SANDBOX", "1")
    assert _by(await diagnose(town, euid=0), "claude (ann)", "options").level is Level.OK
    _no_paid_calls(shims)


def test_root_notice_names_every_way_out() -> None:
    argv = ["claude", "--print", "--dangerously-skip-permissions"]
    notice = root_notice("claude", argv, euid=0, env={})
    assert notice is not None
    for words in (
        "root/sudo",
        "claude-safe",
        "--permission-mode acceptEdits",
        "non-root",
        "IS_SANDBOX=1",
        "never sets it",
    ):
        assert words in notice
    assert root_notice("claude", argv, euid=1000, env={}) is None
    assert root_notice("claude", argv, euid=0, env={"IS_SANDBOX": "1"}) is None
    assert (
        root_notice("x", ["claude", "-p", "--permission-mode", "bypassPermissions"], euid=0, env={})
        is not None
    )
    assert (
        root_notice("x", ["claude", "-p", "--permission-mode=bypassPermissions"], euid=0, env={})
        is not None
    )
    assert (
        root_notice("x", ["claude", "-p", "--permission-mode", "acceptEdits"], euid=0, env={})
        is None
    )
    assert (
        root_notice(
            "codex", ["codex", "exec", "--dangerously-bypass-approvals-and-sandbox"], euid=0, env={}
        )
        is None
    )  # codex accepts it as root


async def test_an_option_the_cli_refuses(town: Town, shims: Path) -> None:
    town.config.data["agent_clis"]["odd"] = {"command": "claude --print --bogus"}
    town.config.data["agent_clis"]["oddx"] = {"command": "codex exec --bogus -"}
    await town.agents.spawn("o", "odd")
    await town.agents.spawn("x", "oddx")
    report = await diagnose(town, euid=1000)
    claude = _by(report, "odd (o)", "options")
    assert claude.level is Level.FAIL and "unknown option '--bogus'" in claude.text
    codex = _by(report, "oddx (x)", "options")
    assert codex.level is Level.FAIL and "unexpected argument '--bogus'" in codex.text
    _no_paid_calls(shims)


def test_a_preset_with_a_prompt_of_its_own_is_never_run() -> None:
    assert probe_safe(["claude", "--print", "--output-format", "json", "--model", "opus"])
    assert probe_safe(["codex", "exec", "--json", "-m", "gpt", "-c", "a=b", "-"])
    assert not probe_safe(["claude", "--print", "do the work"])  # would be a paid call
    assert not probe_safe(["claude", "--model", "opus"])  # not print mode: interactive
    assert not probe_safe(["codex", "exec", "write a poem"])
    assert not probe_safe(["gemini", "--output-format", "json"])
    assert not probe_safe(["aider", "--message"])


async def test_a_prompt_in_the_preset_is_not_probed(town: Town, shims: Path) -> None:
    town.config.data["agent_clis"]["fixed"] = {"command": "claude --print 'do the work'"}
    await town.agents.spawn("f", "fixed")
    options = _by(await diagnose(town, euid=1000), "fixed", "options")
    assert options.level is Level.SKIP
    _no_paid_calls(shims)


async def test_agents_chosen_and_default_cli(town: Town, shims: Path) -> None:
    await _three(town)
    report = await diagnose(town, ["cody"])
    assert {c.subject for c in report.checks} == {"town", "codex (cody)"}
    with pytest.raises(NotFoundError):
        await diagnose(town, ["nobody"])
    stopped = await town.agents.resolve("ann")
    await town.lifecycle.kill(stopped.id)
    assert "claude (ann)" not in {c.subject for c in (await diagnose(town)).checks}


async def test_a_missing_program_and_no_agents_checks_default_cli(
    town_dir: Path, shims: Path
) -> None:
    config = TownConfig.load(town_dir)
    config.data["default_cli"] = "not-a-program-here"
    config.save()
    async with await Town.connect(town_dir) as town:
        report = await diagnose(town)
    installed = _by(report, "not-a-program-here (default_cli)", "installed")
    assert installed.level is Level.FAIL and "not installed or not on PATH" in installed.text
    assert report.blocked


async def test_offline_report_checks_default_cli(town_dir: Path, shims: Path) -> None:
    config = TownConfig.load(town_dir)
    config.data["default_cli"] = "claude"
    problem = Check("town", "redis", Level.FAIL, "Redis is unreachable.")
    report = await diagnose_offline(config, problem, euid=1000)
    assert report.checks[0] is problem
    assert _by(report, "claude (default_cli)", "login").level is Level.FAIL


async def test_an_agent_paused_for_setup_is_named(town: Town, shims: Path) -> None:
    ann = await town.agents.spawn("ann", "claude")
    bob = await town.agents.spawn("bob", "claude")
    reason = "setup: Not logged in · Please run /login"
    await town.agents.mark(ann.id, "interrupt", reason=reason, event_verb="setup")
    await town.agents.mark(bob.id, "interrupt", reason="interrupted", event_verb="interrupt")
    named = [c for c in (await diagnose(town, euid=1000)).checks if c.name == "agent"]
    assert len(named) == 1 and named[0].level is Level.WARN  # not bob: not for setup
    assert reason in named[0].text and "tt resume ann" in named[0].text


# -- probes: timeouts, cancellation, clean-up -------------------------------------------


def _pids_when_written(path: Path) -> list[int]:
    deadline = time.monotonic() + 30
    while not path.exists() or not path.read_text().endswith("\n"):
        assert time.monotonic() < deadline, "the probe never started"
        time.sleep(0.01)
    return [int(p) for p in path.read_text().split()]


def _dead(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _gone(pid: int) -> bool:
    """``pid`` is dead (or a zombie), allowing a moment for a SIGKILL to land: a killed
    grandchild is not ours to wait for."""
    deadline = time.monotonic() + 10
    while not _dead(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _hang_argv(pids: Path) -> list[str]:
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '1000'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}\\n')\n"
        "time.sleep(1000)\n"
    )
    return [sys.executable, "-c", code]


async def test_a_probe_that_outlives_its_timeout_is_killed_with_its_children(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    pids_file = tmp_path / "pids"
    result = []

    async def run() -> None:
        result.append(await probe(_hang_argv(pids_file), timeout=5))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        pids = await trio.to_thread.run_sync(_pids_when_written, pids_file)
        mock_clock.jump(6)  # past the probe's deadline: nothing else moves the clock
    assert result[0].timed_out and result[0].returncode is None
    assert all(_gone(pid) for pid in pids), pids


async def test_a_cancelled_probe_kills_its_group_and_reaps(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe, _hang_argv(pids_file))
            pids = await trio.to_thread.run_sync(_pids_when_written, pids_file)
            scope.cancel()
    assert scope.cancelled_caught
    assert all(_gone(pid) for pid in pids), pids
    with pytest.raises(ChildProcessError):
        os.waitpid(pids[0], os.WNOHANG)  # reaped: not our child any more


async def test_a_probe_that_cannot_start(tmp_path: Path) -> None:
    missing = await probe([str(tmp_path / "nothing")])
    assert missing.returncode is None and "No such file" in missing.error
    done = await probe(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert done.last_line() == "err"


async def test_a_hung_login_check_is_a_warning_and_leaves_nothing_behind(
    town: Town, shims: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    await town.agents.spawn("ann", "claude")
    monkeypatch.setenv("FAKE_HANG", "1")
    monkeypatch.setenv("FAKE_PIDS", str(tmp_path / "pids"))
    report = await diagnose(town, timeout=3, euid=1000)
    login = _by(report, "claude", "login")
    assert login.level is Level.WARN and "timed out" in login.text
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert all(_gone(pid) for pid in pids), pids


async def test_the_town_mcp_server_is_reached_by_claude(
    town: Town, shims: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await town.agents.spawn("sam", "claude-safe")
    await town.agents.spawn("cody", "codex")
    monkeypatch.setenv("FAKE_MCP", "handshake")  # the stand-in really connects
    report = await diagnose(town, euid=1000)
    mcp = _by(report, "claude-safe", "mcp")
    assert mcp.level is Level.OK and "✔ Connected" in mcp.text  # a real handshake with tt mcp
    assert "-m tinytown mcp" in mcp.text
    assert _by(report, "codex", "mcp").level is Level.SKIP
    await town.agents.spawn("t", "claude --print --model opus")  # text: no MCP config
    plain = _by(await diagnose(town, ["t"], euid=1000), "claude --print --model", "mcp")
    assert plain.level is Level.SKIP and "not handed MCP servers" in plain.text
    assert not (Path.home() / ".claude.json").exists()  # the user's claude config untouched

    monkeypatch.setattr(
        mcpwiring, "server_entry", lambda root, env: {"command": "false", "args": [], "env": {}}
    )
    broken = _by(await diagnose(town, ["sam"], euid=1000), "claude-safe", "mcp")
    assert broken.level is Level.FAIL and "✘ Failed to connect" in broken.text

    town.config.data["mcp"] = {"agents": False}
    off = _by(await diagnose(town, ["sam"], euid=1000), "claude-safe", "mcp")
    assert off.level is Level.SKIP


async def test_gemini_keeps_its_approval_mode_only_in_a_trusted_folder(
    town: Town, shims: Path, tmp_path: Path
) -> None:
    town.config.data["agent_clis"]["gem-plain"] = {"command": "gemini --output-format json"}
    town.config.data["agent_clis"]["gem-skip"] = {
        "command": "gemini --output-format json --approval-mode yolo --skip-trust"
    }
    for name, cli in (("g", "gemini"), ("s", "gemini-safe"), ("p", "gem-plain"), ("k", "gem-skip")):
        await town.agents.spawn(name, cli)

    async def levels() -> dict[str, Level]:
        report = await diagnose(town, euid=1000)
        return {c.subject.split()[0]: c.level for c in report.checks if c.name == "options"}

    assert await levels() == {
        "gemini": Level.WARN,
        "gemini-safe": Level.WARN,
        "gem-plain": Level.SKIP,
        "gem-skip": Level.OK,
    }
    rules = tmp_path / "home" / ".gemini" / "trustedFolders.json"
    rules.parent.mkdir(parents=True)
    rules.write_text(json.dumps({str(town.root / "any"): "TRUST_PARENT"}))  # covers the root
    assert (await levels())["gemini"] is Level.OK
    rules.write_text(
        json.dumps(
            {
                str(town.root.parent): "TRUST_FOLDER",
                str(town.root): "DO_NOT_TRUST",  # longest wins
            }
        )
    )
    assert (await levels())["gemini-safe"] is Level.WARN
    rules.write_text(json.dumps({str(town.root.parent): "TRUST_FOLDER"}))
    assert (await levels())["gemini-safe"] is Level.OK


async def test_a_cli_table_broken_after_loading_is_one_failed_check(
    town: Town, shims: Path
) -> None:
    await town.agents.spawn("ann", "claude")
    await town.agents.spawn("cody", "codex")
    town.config.data["agent_clis"]["claude"] = {"command": "claude --print", "format": "nope"}
    report = await diagnose(town, euid=1000)
    broken = _by(report, "claude (ann)", "config")
    assert broken.level is Level.FAIL and "nope" in broken.text
    assert _by(report, "codex (cody)", "installed").level is Level.OK  # the rest is checked


async def test_cancelling_the_doctor_leaves_no_probe_behind(
    town: Town, shims: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    await town.agents.spawn("ann", "claude")
    monkeypatch.setenv("FAKE_HANG", "1")
    monkeypatch.setenv("FAKE_PIDS", str(tmp_path / "pids"))
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(diagnose, town, timeout=60, euid=1000))
            pids = await trio.to_thread.run_sync(_pids_when_written, tmp_path / "pids")
            scope.cancel()
    assert scope.cancelled_caught
    assert all(_gone(pid) for pid in pids), pids


async def test_the_town_api_runs_the_doctor(
    town: Town, shims: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    await _three(town)
    report = await town.doctor(["cody"], euid=1000)
    assert {c.subject for c in report.checks} == {"town", "codex (cody)"}
    assert _by(report, "codex (cody)", "installed").level is Level.OK
    everyone = await town.doctor(euid=1000)  # default: every live agent
    assert {"claude (ann)", "codex (cody)", "gemini (gem)"} <= {c.subject for c in everyone.checks}
    with pytest.raises(NotFoundError):
        await town.doctor(["nobody"])
    monkeypatch.setenv("FAKE_EUID", "0")  # the user who runs the rounds is passed on
    assert _by(await town.doctor(["ann"], euid=0), "claude (ann)", "options").level is Level.FAIL
    monkeypatch.setenv("FAKE_EUID", "1000")
    monkeypatch.setenv("FAKE_HANG", "1")  # and the probes' timeout
    monkeypatch.setenv("FAKE_PIDS", str(tmp_path / "pids"))
    login = _by(await town.doctor(["ann"], timeout=1, euid=1000), "claude", "login")
    assert login.level is Level.WARN and "timed out" in login.text
    _no_paid_calls(shims)
