"""CliSpec: each preset's command per round (sessions, MCP), formats from flags or the
``[agent_clis.X]`` table, config errors, bypass flags and the safety notice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.services.agentcli import samples
from tinytown.errors import ConfigError
from tinytown.services.agentcli import safety_notice
from tinytown.services.agentcli.report import Outcome
from tinytown.services.agentcli.spec import CliSpecError, build
from tinytown.services.config import BUILTIN_CLIS, TownConfig
from tinytown.services.legacy import preset_for

CLAUDE = ["claude", "--print", "--output-format", "json", "--dangerously-skip-permissions"]
CODEX = [
    "codex", "exec", "--json", "--dangerously-bypass-approvals-and-sandbox",
    "--skip-git-repo-check",
]  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> TownConfig:
    return TownConfig(tmp_path, {"name": "t"})


@pytest.fixture
def mcp(tmp_path: Path) -> Path:
    path = tmp_path / "mcp.json"
    server = {"command": "/usr/bin/tt", "args": ["mcp", "--town", "a b"], "env": {"K": 'v"1'}}
    path.write_text(json.dumps({"mcpServers": {"tinytown": server}}))
    return path


def test_claude_rounds(config: TownConfig, mcp: Path) -> None:
    spec = config.cli_spec("claude")
    assert (spec.format, spec.prompt_on_stdin, spec.mcp) == ("claude-json", True, "--mcp-config")
    assert spec.round_argv(None, False, None) == CLAUDE
    assert spec.round_argv("s1", True, None) == [*CLAUDE, "--resume", "s1"]
    assert spec.round_argv("s1", False, None) == CLAUDE  # fresh: the id is not reused
    assert spec.round_argv("s1", True, mcp) == [*CLAUDE, "--resume", "s1", "--mcp-config", str(mcp)]
    safe = config.cli_spec("claude-safe").round_argv(None, False, None)
    assert "--dangerously-skip-permissions" not in safe
    assert safe[-2:] == ["--permission-mode", "acceptEdits"]


def test_codex_rounds(config: TownConfig, mcp: Path) -> None:
    spec = config.cli_spec("codex")
    assert (spec.format, spec.sessions) == ("codex-jsonl", "exec resume")
    assert spec.mcp == "-c mcp_servers"
    assert spec.round_argv(None, False, None) == [*CODEX, "-"]
    # exec's own flags stay before `resume` (`codex exec resume` takes only a few)
    assert spec.round_argv("th-1", True, None) == [*CODEX, "resume", "th-1", "-"]
    assert spec.round_argv("th-1", True, mcp) == [
        *CODEX,
        "-c", 'mcp_servers.tinytown.command="/usr/bin/tt"',
        "-c", 'mcp_servers.tinytown.args=["mcp","--town","a b"]',
        "-c", 'mcp_servers.tinytown.env.K="v\\"1"',
        "resume", "th-1", "-",
    ]  # fmt: skip
    mini = config.cli_spec("codex-mini").round_argv("th-1", True, None)
    assert mini[-3:] == ["resume", "th-1", "-"] and "gpt-5.4-mini" in mini


def test_codex_refuses_an_unreadable_mcp_file(config: TownConfig, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CliSpecError, match="not a readable mcpServers JSON file"):
        config.cli_spec("codex").round_argv(None, False, bad)
    with pytest.raises(CliSpecError):
        config.cli_spec("codex").round_argv(None, False, tmp_path / "missing.json")


def test_gemini_aider_and_text_clis_ignore_sessions_and_mcp(config: TownConfig, mcp: Path) -> None:
    gemini = config.cli_spec("gemini")
    assert (gemini.format, gemini.sessions, gemini.mcp) == ("gemini-json", None, None)
    assert gemini.round_argv("g", True, mcp) == ["gemini", "--output-format", "json",
                                                 "--approval-mode", "yolo"]  # fmt: skip
    aider = config.cli_spec("aider")
    assert aider.format == "text" and aider.prompt_on_stdin
    assert aider.round_argv("x", True, mcp)[-2:] == ["--message-file", "/dev/stdin"]
    assert config.cli_spec("cursor").round_argv("x", True, mcp) == ["cursor"]


def test_the_default_cli_and_raw_commands(config: TownConfig) -> None:
    assert config.cli_spec(None).name == "claude"
    raw = config.cli_spec("claude --model opus --print --output-format stream-json --verbose")
    assert raw.format == "claude-json" and raw.round_argv("s", True, None)[-2:] == ["--resume", "s"]
    assert config.cli_spec("claude --print").name == "claude"  # Rust's command: the preset
    assert config.cli_spec("claude --model opus --print").format == "text"
    config.data["agent_clis"] = {"claude": {"command": "claude --print"}}  # overridden
    assert config.cli_spec("claude").format == "text"
    assert config.cli_spec("gemini -o json").format == "gemini-json"
    assert config.cli_spec("codex exec --full-auto -").format == "text"  # no --json


def test_a_custom_cli_declares_format_prompt_and_patterns(tmp_path: Path) -> None:
    (tmp_path / "tinytown.toml").write_text(
        'name = "t"\n'
        "[agent_clis.wrapped]\n"
        'command = "my-claude-wrapper --json"\n'
        'format = "claude-json"\n'
        'prompt = "argument"\n'
        'setup_patterns = ["licen[cs]e expired"]\n'
    )
    spec = TownConfig.load(tmp_path).cli_spec("wrapped")
    assert (spec.format, spec.prompt_on_stdin, spec.mcp) == ("claude-json", False, "--mcp-config")
    assert spec.read(1, False, "", "Licence expired").outcome is Outcome.SETUP
    report = spec.read(0, False, samples.CLAUDE_OK, "")
    assert report.ok and report.answer == "Added the endpoint and its tests."


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ('format = "xml"', "format must be one of 'claude-json', 'codex-jsonl', 'gemini-json'"),
        ('prompt = "file"', "prompt must be 'stdin' or 'argument', not 'file'."),
        ('setup_patterns = "x"', "setup_patterns must be a list of strings, not 'x'."),
        ("rate_limit_patterns = [1]", "rate_limit_patterns must be a list of strings"),
        ('transient_patterns = ["("]', "transient_patterns: '(' is not a valid pattern"),
        ("formt = 'text'", "has unknown key 'formt'; known keys: command, format"),
    ],
)
def test_a_bad_cli_table_is_one_sentence_naming_file_and_key(
    tmp_path: Path, table: str, error: str
) -> None:
    path = tmp_path / "tinytown.toml"
    path.write_text(f'name = "t"\n[agent_clis.mine]\ncommand = "mine"\n{table}\n')
    with pytest.raises(ConfigError) as caught:
        TownConfig.load(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path}: [agent_clis.mine] ") and error in message
    assert message.endswith(".") and "\n" not in message
    config = TownConfig.load(tmp_path, check=False)  # `tt config` can still fix it
    with pytest.raises(ConfigError, match=r"\[agent_clis.mine\]"):
        config.cli_spec("mine")


def test_build_rejects_directly() -> None:
    with pytest.raises(CliSpecError, match="format must be one of"):
        build("x", ["x"], {"format": "json"})


def test_bypass_flags_and_the_safety_notice(config: TownConfig) -> None:
    bypassing = {name for name in BUILTIN_CLIS if config.cli_spec(name).bypasses_permissions}
    assert bypassing == {"claude", "codex", "codex-mini", "gemini", "aider"}
    notice = safety_notice(config.cli_spec("claude"))
    assert notice and "--dangerously-skip-permissions" in notice and "'claude-safe'" in notice
    assert "--approval-mode yolo" in (safety_notice(config.cli_spec("gemini")) or "")
    assert "'codex-safe'" in (safety_notice(config.cli_spec("codex-mini")) or "")
    for safe in ("claude-safe", "codex-safe", "gemini-safe", "cursor"):
        assert safety_notice(config.cli_spec(safe)) is None
    assert config.cli_spec("claude --permission-mode=bypassPermissions -p").bypasses_permissions
    assert not config.cli_spec("mytool -y --yes").bypasses_permissions  # not gemini's/aider's
    assert config.cli_spec("gemini -y").bypasses_permissions


def test_rust_preset_commands_still_map_to_presets() -> None:
    assert preset_for("aider --yes --no-auto-commits --message", BUILTIN_CLIS) == "aider"
    assert preset_for("claude --print --dangerously-skip-permissions", BUILTIN_CLIS) == "claude"
    rust_mini = (
        "codex exec --dangerously-bypass-approvals-and-sandbox"
        ' -m gpt-5.4-mini -c model_reasoning_effort="medium"'
    )
    assert preset_for(rust_mini, BUILTIN_CLIS) == "codex-mini"
    assert preset_for("aider --yes", BUILTIN_CLIS) == "aider --yes"  # not a preset's


def test_early_stop_only_for_codex_waiting_for_network(config: TownConfig) -> None:
    codex = config.cli_spec("codex")
    stop = codex.early_stop(samples.CODEX_WAITING + "\n")
    assert stop is not None and stop.outcome is Outcome.TRANSIENT
    assert stop.message == (
        "codex cannot reach its service (no network?): Reconnecting... waiting for network"
        " (Connection failed: error sending request)"
    )
    plain = codex.early_stop("ERROR: Reconnecting... waiting for network (x)")
    assert plain is not None
    assert plain.message.endswith("): ERROR: Reconnecting... waiting for network (x)")
    assert codex.early_stop('{"type":"error","message":"Reconnecting... 2/5 (x)"}') is None
    assert config.cli_spec("claude").early_stop(samples.CODEX_WAITING) is None


def test_a_rust_town_file_keeps_the_presets_and_its_keys_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "tinytown.toml").write_text(
        'name = "t"\n'
        '[agent_clis.claude]\nname = "claude"\n'
        'command = "claude --print --dangerously-skip-permissions"\n'
        '[agent_clis.aider]\nname = "aider"\ncommand = "aider --yes --no-auto-commits --message"\n'
        '[agent_clis.codex]\nname = "codex"\ncommand = "codex exec --full-auto"\nworkdir = "."\n'
    )
    config = TownConfig.load(tmp_path)  # Rust's name/workdir/env keys are no error
    assert config.clis()["claude"] == BUILTIN_CLIS["claude"]  # Rust's init wrote its own
    assert config.cli_spec("claude").format == "claude-json"
    assert config.clis()["aider"] == BUILTIN_CLIS["aider"]  # and its broken aider is fixed
    assert config.clis()["codex"] == "codex exec --full-auto"  # a real override stays
