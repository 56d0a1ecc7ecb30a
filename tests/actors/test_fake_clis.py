"""The fake claude, codex and gemini (actors/fake_*.py) run as real subprocesses under
their real names (shims on PATH), driven through the presets' own command lines and read
back with the presets' parsers: what a town sees of them is what it would see of the
real CLIs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.fakeclis import install_fake_clis
from tinytown.services.agentcli.report import Outcome, RoundReport
from tinytown.services.agentcli.spec import CliSpec
from tinytown.services.config import TownConfig

ROOT_REFUSAL = (
    "--dangerously-skip-permissions cannot be used with root/sudo privileges for security"
    " reasons"
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    install_fake_clis(bin_dir)
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["FAKE_CLI_LOG"] = str(tmp_path / "calls.jsonl")
    for name in ("FAKE_CLI_AS_ROOT", "FAKE_CLI_NOT_LOGGED_IN", "IS_SANDBOX"):
        env.pop(name, None)
    return env


@pytest.fixture
def config(tmp_path: Path) -> TownConfig:
    return TownConfig(tmp_path, {"name": "t"})


def task(description: str) -> str:
    return f"### Task t1\nTask ID: t1\nDescription: {description}\n"


def run(
    argv: list[str], prompt: str, env: dict[str, str], cwd: Path, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, input=prompt, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def round_of(
    spec: CliSpec,
    description: str,
    env: dict[str, str],
    cwd: Path,
    session: str | None = None,
    mcp: Path | None = None,
) -> RoundReport:
    done = run(spec.round_argv(session, session is not None, mcp), task(description), env, cwd)
    return spec.read(done.returncode, False, done.stdout, done.stderr)


@pytest.mark.parametrize("cli", ["claude", "claude-safe", "codex", "gemini"])
def test_each_preset_reads_its_fakes_answer_session_and_usage(
    cli: str, config: TownConfig, env: dict[str, str], tmp_path: Path
) -> None:
    spec = config.cli_spec(cli)
    report = round_of(spec, "print built it; tokens 1200 300 50; cost 0.25", env, tmp_path)
    assert report.outcome is Outcome.OK
    assert report.answer == "built it\ndone: 3 directive(s)"  # the answer, not the JSON
    assert report.session_id and len(report.session_id) == 36
    assert (report.usage.input_tokens, report.usage.output_tokens) == (1200, 300)
    assert report.usage.cached_tokens == 50
    expected_cost = 0.25 if spec.format == "claude-json" else 0.0  # only claude says
    assert report.usage.cost_usd == expected_cost


@pytest.mark.parametrize("cli", ["claude", "codex"])
def test_a_resumed_round_continues_the_session(
    cli: str, config: TownConfig, env: dict[str, str], tmp_path: Path
) -> None:
    spec = config.cli_spec(cli)
    first = round_of(spec, "session", env, tmp_path)
    again = round_of(spec, "session", env, tmp_path, session=first.session_id)
    assert again.session_id == first.session_id
    assert again.answer.splitlines()[0] == f"session {first.session_id} resumed"
    calls = [json.loads(line) for line in Path(env["FAKE_CLI_LOG"]).read_text().splitlines()]
    assert first.session_id in calls[1]["argv"] and first.session_id not in calls[0]["argv"]


@pytest.mark.parametrize("cli", ["claude", "codex"])
def test_mcp_servers_reach_the_cli(
    cli: str, config: TownConfig, env: dict[str, str], tmp_path: Path
) -> None:
    mcp = tmp_path / "mcp.json"
    server = {"command": "tt", "args": ["mcp"], "env": {"TT_TOWN": "t"}}
    mcp.write_text(json.dumps({"mcpServers": {"tinytown": server}}))
    report = round_of(config.cli_spec(cli), "mcp", env, tmp_path, mcp=mcp)
    assert report.ok and report.answer.splitlines()[0] == "mcp tinytown"


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_rate_limits_name_their_reset(
    cli: str, config: TownConfig, env: dict[str, str], tmp_path: Path
) -> None:
    report = round_of(config.cli_spec(cli), "print partial; ratelimit 120", env, tmp_path)
    assert report.outcome is Outcome.RATE_LIMITED
    assert report.retry_after is not None and 100 <= report.retry_after <= 120
    assert "\n" not in report.message and report.message


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_overload_and_rate_limits_without_a_time(
    cli: str, config: TownConfig, env: dict[str, str], tmp_path: Path
) -> None:
    spec = config.cli_spec(cli)
    limited = round_of(spec, "ratelimit", env, tmp_path)
    overloaded = round_of(spec, "overloaded", env, tmp_path)
    assert limited.outcome is Outcome.RATE_LIMITED and limited.retry_after is None
    assert overloaded.outcome in (Outcome.RATE_LIMITED, Outcome.TRANSIENT)
    if cli == "claude":  # 529 is claude's overload: a rate limit for the town
        assert overloaded.outcome is Outcome.RATE_LIMITED and "529" in overloaded.message


@pytest.mark.parametrize(
    ("cli", "said"),
    [
        ("claude", "Not logged in · Please run /login"),
        ("codex", "unexpected status 401 Unauthorized"),
        ("gemini", "Please set an Auth method"),
    ],
)
def test_not_logged_in_is_a_setup_failure(
    cli: str, said: str, config: TownConfig, env: dict[str, str], tmp_path: Path
) -> None:
    report = round_of(config.cli_spec(cli), "notloggedin", env, tmp_path)
    assert report.outcome is Outcome.SETUP and report.message.startswith(said)
    env["FAKE_CLI_NOT_LOGGED_IN"] = "1"  # the environment's way, for `tt doctor` tests
    assert round_of(config.cli_spec(cli), "print x", env, tmp_path).outcome is Outcome.SETUP


def test_claude_refuses_its_bypass_as_root_exactly_as_the_real_one(
    config: TownConfig, env: dict[str, str], tmp_path: Path
) -> None:
    env["FAKE_CLI_AS_ROOT"] = "1"
    spec = config.cli_spec("claude")
    done = run(spec.round_argv(None, False, None), task("print x"), env, tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", ROOT_REFUSAL + "\n")
    report = spec.read(done.returncode, False, done.stdout, done.stderr)
    assert report.outcome is Outcome.SETUP and report.message == ROOT_REFUSAL
    assert round_of(config.cli_spec("claude-safe"), "print x", env, tmp_path).ok
    env["IS_SANDBOX"] = "1"
    assert round_of(spec, "print x", env, tmp_path).ok
    env.pop("FAKE_CLI_AS_ROOT")
    refused = round_of(spec, "rootrefuse", env, tmp_path)  # the directive's way
    assert refused.outcome is Outcome.SETUP and refused.message == ROOT_REFUSAL


def test_a_failed_task_is_a_real_failure_with_the_clis_words(
    config: TownConfig, env: dict[str, str], tmp_path: Path
) -> None:
    for cli in ("claude", "codex", "gemini"):
        report = round_of(config.cli_spec(cli), "print half done; fail 3", env, tmp_path)
        assert report.outcome is Outcome.FAILED, cli
        assert "half done" in report.message or "half done" in report.answer, cli


def test_codex_without_network_never_exits_and_early_stop_ends_it(
    config: TownConfig, env: dict[str, str], tmp_path: Path
) -> None:
    spec = config.cli_spec("codex")
    with subprocess.Popen(
        spec.round_argv(None, False, None),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
        text=True,
    ) as proc:
        assert proc.stdin and proc.stdout
        proc.stdin.write(task("nonetwork"))
        proc.stdin.close()
        stop = None
        try:
            for line in proc.stdout:  # ends only because early_stop says so
                stop = spec.early_stop(line)
                if stop:
                    break
            time.sleep(0.5)
            assert proc.poll() is None  # still "reconnecting": it would never exit
        finally:
            proc.kill()
    assert stop is not None and stop.outcome is Outcome.TRANSIENT
    assert stop.message.startswith("codex cannot reach its service")
    assert "Reconnecting... waiting for network" in stop.message


def test_version_and_login_probes(env: dict[str, str], tmp_path: Path) -> None:
    assert run(["claude", "--version"], "", env, tmp_path).stdout == "2.1.197 (Claude Code)\n"
    assert run(["codex", "--version"], "", env, tmp_path).stdout == "codex-cli 0.171.0\n"
    assert run(["gemini", "--version"], "", env, tmp_path).stdout == "0.61.0\n"
    status = run(["claude", "auth", "status"], "", env, tmp_path)
    assert status.returncode == 0 and json.loads(status.stdout)["loggedIn"] is True
    env["FAKE_CLI_NOT_LOGGED_IN"] = "1"
    status = run(["claude", "auth", "status"], "", env, tmp_path)
    assert status.returncode == 1 and json.loads(status.stdout) == {
        "loggedIn": False,
        "authMethod": "none",
        "apiProvider": "firstParty",
    }
    login = run(["codex", "login", "status"], "", env, tmp_path)
    assert (login.returncode, login.stdout) == (1, "Not logged in\n")


def test_bad_flags_are_refused_as_the_real_clis_refuse_them(
    env: dict[str, str], tmp_path: Path
) -> None:
    claude = run(["claude", "--print", "--bogus"], "x", env, tmp_path)
    assert (claude.returncode, claude.stderr) == (1, "error: unknown option '--bogus'\n")
    codex = run(["codex", "exec", "--bogus", "-"], "x", env, tmp_path)
    assert codex.returncode == 2 and "unexpected argument '--bogus' found" in codex.stderr
    outside = run(["codex", "exec", "--json", "-"], "x", env, tmp_path)
    assert outside.returncode == 1 and "--skip-git-repo-check was not specified" in outside.stderr
    stream = run(["claude", "-p", "--output-format", "stream-json"], "x", env, tmp_path)
    assert stream.returncode == 1 and "requires --verbose" in stream.stderr


def test_claude_stream_json_ends_with_the_result(
    config: TownConfig, env: dict[str, str], tmp_path: Path
) -> None:
    done = run(
        ["claude", "-p", "--output-format", "stream-json", "--verbose"],
        task("print streamed; cost 0.5"),
        env,
        tmp_path,
    )
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["type"] for e in events] == ["system", "assistant", "result"]
    spec = config.cli_spec("claude -p --output-format stream-json --verbose")
    report = spec.read(done.returncode, False, done.stdout, done.stderr)
    assert report.ok and report.answer.startswith("streamed") and report.usage.cost_usd == 0.5


def test_claude_budget_flag_stops_a_round_over_budget(
    config: TownConfig, env: dict[str, str], tmp_path: Path
) -> None:
    argv = [*config.cli_spec("claude").argv, "--max-budget-usd", "0.1"]
    done = run(argv, task("cost 0.5"), env, tmp_path)
    result = json.loads(done.stdout)
    assert done.returncode == 1 and result["is_error"] is True
    assert result["subtype"] == "error_max_budget_usd"
