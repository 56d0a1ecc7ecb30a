"""Through `tt`: settings are range-checked at `tt config` and at load; a bad value is one
line naming the file and key, nothing is written, no temporary file stays behind."""

from __future__ import annotations

from pathlib import Path

from tests.cli.clihelp import ok, user_error


def test_config_refuses_out_of_range_values(tt, town_dir: Path) -> None:
    path = town_dir / "tinytown.toml"
    before = path.read_bytes()
    assert user_error(tt("config", "runtime.kill_grace", "--", "-5")) == (
        "Config key 'runtime.kill_grace' must be 0 or more, not -5.0."
    )
    assert "must be more than 0" in user_error(tt("config", "runtime.heartbeat_interval", "0"))
    assert "finite" in user_error(tt("config", "runtime.round_timeout", "inf"))
    assert "needs an integer" in user_error(tt("config", "runtime.log_keep", "1.5"))
    assert path.read_bytes() == before
    assert not (town_dir / "tinytown.toml.tmp").exists()
    assert ok(tt("config", "runtime.log_max_bytes", "2048")) == "runtime.log_max_bytes = 2048\n"


def test_a_hand_written_bad_value_is_reported_then_fixed(tt, town_dir: Path) -> None:
    path = town_dir / "tinytown.toml"
    path.write_text(path.read_text().replace("kill_grace = 1.0", 'kill_grace = "abc"'))
    expected = f"{path}: Config key 'runtime.kill_grace' needs a number, not 'abc'."
    assert user_error(tt("status")) == expected
    # tt run fails the same way at once: no actor ever crash-loops on the value
    run = tt("run", "--no-repl", timeout=60)
    assert user_error(run) == expected
    assert "runtime.kill_grace = abc" in ok(tt("config"))  # shown, so it can be fixed
    assert ok(tt("config", "runtime.kill_grace", "2")) == "runtime.kill_grace = 2.0\n"
    ok(tt("status"))
    assert not (town_dir / "tinytown.toml.tmp").exists()
