"""Settings are checked at the boundary: ``tt config`` (TownConfig.set) and load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tinytown.errors import ConfigError, InvalidInputError
from tinytown.services.config import DEFAULTS, TownConfig
from tinytown.services.town import Town


def config_in(tmp_path: Path) -> TownConfig:
    return TownConfig.create(tmp_path, "cfg-town")


def test_defaults_include_log_rotation() -> None:
    assert DEFAULTS["runtime.log_max_bytes"] == 10 * 1024 * 1024
    assert DEFAULTS["runtime.log_keep"] == 3


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("runtime.kill_grace", "-5", "must be 0 or more, not -5.0"),
        ("runtime.shutdown_grace", "-0.1", "must be 0 or more"),
        ("runtime.round_timeout", "-1", "must be 0 or more"),
        ("runtime.heartbeat_interval", "0", "must be more than 0"),
        ("runtime.heartbeat_interval", "nan", "needs a finite number"),
        ("runtime.round_timeout", "inf", "needs a finite number"),
        ("runtime.max_restarts", "-1", "must be 0 or more"),
        ("runtime.max_restarts", "2.5", "needs an integer"),
        ("runtime.log_max_bytes", "0", "must be more than 0"),
        ("runtime.log_keep", "-1", "must be 0 or more"),
        ("runtime.kill_grace", "abc", "needs a number, not 'abc'"),
        ("runtime.kill_grace", "\udcff", "is not valid UTF-8 text (byte 0xff)"),
        ("default_cli", "x\udcfe", "is not valid UTF-8 text (byte 0xfe)"),
    ],
)
def test_set_refuses_bad_values_and_writes_nothing(
    tmp_path: Path, key: str, value: str, why: str
) -> None:
    config = config_in(tmp_path)
    before = config.path.read_bytes()
    with pytest.raises(ConfigError) as info:
        config.set(key, value)
    assert why in str(info.value) and "\n" not in str(info.value)
    assert config.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tinytown.toml"]  # no .tmp


def test_set_accepts_the_edges(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    assert config.set("runtime.kill_grace", "0") == 0.0
    assert config.set("runtime.max_restarts", "0") == 0
    assert config.set("runtime.heartbeat_interval", "0.01") == 0.01
    assert TownConfig.load(tmp_path).setting("runtime.kill_grace") == 0.0


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('kill_grace = "abc"', "'runtime.kill_grace' needs a number, not 'abc'"),
        ("kill_grace = -5", "'runtime.kill_grace' must be 0 or more, not -5"),
        ("max_restarts = 1.5", "'runtime.max_restarts' needs an integer, not 1.5"),
        ("max_restarts = true", "'runtime.max_restarts' needs an integer, not True"),
        ("heartbeat_interval = nan", "'runtime.heartbeat_interval' needs a finite number"),
    ],
)
def test_a_bad_hand_written_value_is_one_line_naming_file_and_key(
    tmp_path: Path, line: str, why: str
) -> None:
    config = config_in(tmp_path)
    text = config.path.read_text().replace("[runtime]\n", f"[runtime]\n{line}\n")
    text = text.replace("kill_grace = 5.0\n", "") if "kill_grace" in line else text
    config.path.write_text(text)
    with pytest.raises(ConfigError) as info:
        TownConfig.load(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{config.path}: Config key ") and why in message
    unchecked = TownConfig.load(tmp_path, check=False)  # what `tt config` uses to fix it
    with pytest.raises(ConfigError, match="Config key"):
        unchecked.setting(why.split("'")[1])
    key = why.split("'")[1]
    unchecked.set(key, "1")
    assert TownConfig.load(tmp_path).setting(key) == 1


def test_save_never_leaves_a_temporary_file(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    before = config.path.read_bytes()
    config.data["default_cli"] = "bad \udcff"  # slipped past set(): save still refuses
    with pytest.raises(ConfigError, match="Cannot write"):
        config.save()
    assert config.path.read_bytes() == before
    assert not (tmp_path / "tinytown.toml.tmp").exists()


async def test_connecting_to_a_town_with_a_bad_setting_fails_cleanly(town_dir: Path) -> None:
    config = TownConfig.load(town_dir)
    config.data["runtime"]["kill_grace"] = -5.0
    config.save()
    with pytest.raises(ConfigError, match="kill_grace"):
        await Town.connect(town_dir)


async def test_services_refuse_text_that_is_not_utf8_before_writing(town: Town) -> None:
    with pytest.raises(InvalidInputError, match="task description is not valid UTF-8"):
        await town.backlog.add("bad \udcff")
    with pytest.raises(InvalidInputError, match="Tag"):
        await town.backlog.add("fine", tags=["\udcff"])
    with pytest.raises(InvalidInputError, match="agent's role"):
        await town.agents.spawn("w", role="\udcff")
    assert await town.tasks.list() == [] and await town.agents.list() == []
    _ = math


HAND_WRITTEN = """\
# Our town: keep this comment.
name = "cfg-town"
default_cli = "claude"  # the usual one

[runtime]
# rounds are long here
round_timeout = 1800.0
kill_grace = 5.0  # seconds

[agent_clis.mine]
command = "echo mine"   # odd spacing kept
"""


def test_set_keeps_comments_and_formatting(tmp_path: Path) -> None:
    (tmp_path / "tinytown.toml").write_text(HAND_WRITTEN)
    config = TownConfig.load(tmp_path)
    config.set("runtime.kill_grace", "2")
    config.set("agent_clis.other", "echo other")
    config.set("agent.idle_timeout_secs", "30")
    text = (tmp_path / "tinytown.toml").read_text()
    expected = HAND_WRITTEN.replace("kill_grace = 5.0  # seconds", "kill_grace = 2.0  # seconds")
    assert text.startswith(expected), text  # every comment and the spacing kept
    assert TownConfig.load(tmp_path).data["agent_clis"]["other"] == {"command": "echo other"}
    assert TownConfig.load(tmp_path).setting("agent.idle_timeout_secs") == 30


def test_save_changes_only_what_differs(tmp_path: Path) -> None:
    (tmp_path / "tinytown.toml").write_text(HAND_WRITTEN)
    config = TownConfig.load(tmp_path)
    config.save()
    assert (tmp_path / "tinytown.toml").read_text() == HAND_WRITTEN
    del config.data["agent_clis"]["mine"]
    config.save()
    assert "mine" not in (tmp_path / "tinytown.toml").read_text()
    assert "# rounds are long here" in (tmp_path / "tinytown.toml").read_text()


def test_refresh_rereads_a_changed_file_and_keeps_settings_on_a_bad_one(tmp_path: Path) -> None:
    (tmp_path / "tinytown.toml").write_text(HAND_WRITTEN)
    running = TownConfig.load(tmp_path)
    assert running.refresh() is False  # unchanged: one stat, nothing read
    TownConfig.load(tmp_path).set("agent_clis.new", "echo new")  # another process: tt config
    assert "new" not in running.clis()
    assert running.refresh() is True and running.clis()["new"] == "echo new"
    (tmp_path / "tinytown.toml").write_text(HAND_WRITTEN + "\n[runtime\n")
    with pytest.raises(ConfigError, match=r"tinytown\.toml is not valid TOML"):
        running.refresh()
    assert running.clis()["new"] == "echo new"  # the settings in use stay


def test_a_missing_cli_is_explained_with_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "tinytown.toml").write_text(HAND_WRITTEN)
    config = TownConfig.load(tmp_path)
    path = tmp_path / "tinytown.toml"
    assert config.explain_missing_cli("nope", "nope") == (
        f"CLI 'nope' is not defined in {path}, and no program 'nope' is installed or on PATH."
    )
    assert f"CLI 'mine' (preset as of {path}) needs 'echo'" in config.explain_missing_cli(
        "mine", "echo"
    )
    assert "built-in preset" in config.explain_missing_cli("claude", "claude")


def test_round_timeout_zero_means_no_limit(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    config.set("runtime.round_timeout", "0")
    config.save()
    assert TownConfig.load(tmp_path).setting("runtime.round_timeout") == 0
