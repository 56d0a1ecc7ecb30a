"""Text arguments are checked once, at the parser: bytes that are not UTF-8 in argv are
refused with one line naming the argument (exit 2), before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from tinytown.services.town import Town

BAD = b"caf\xe9 \xff"  # Latin-1, as a terminal with the wrong locale would send it

#: (argv, the argument the error names, the command whose help it points to)
CASES = [
    ([b"send", b"bob", BAD], "MSG", "tt send"),
    ([b"send", b"--all", BAD], "TO", "tt send"),  # the parser keeps that text in TO
    ([b"send", b"--from", BAD, b"bob", b"hi"], "--from", "tt send"),
    ([b"assign", b"bob", BAD], "DESC", "tt assign"),
    ([b"assign", b"--tag", BAD, b"bob", b"fine"], "--tag", "tt assign"),
    ([b"backlog", b"add", BAD], "DESC", "tt backlog add"),
    ([b"config", b"default_cli", BAD], "VALUE", "tt config"),
    ([b"config", BAD, b"x"], "KEY", "tt config"),
    ([b"spawn", BAD], "NAME", "tt spawn"),
    ([b"list", b"-t", BAD], "-t/--town", "tt list"),
]


async def _redis_state(town: Town) -> dict[str, Any]:
    """Every key of the town with its serialised value (DUMP)."""
    state: dict[str, Any] = {}
    cursor = "0"
    while True:
        cursor, keys = await town.redis.execute(
            "SCAN", cursor, "MATCH", f"tt:{town.name}:*", "COUNT", 1000
        )
        for key in keys:
            state[str(key)] = await town.redis.execute("DUMP", key)
        if str(cursor) == "0":
            return state


@pytest.mark.parametrize(("argv", "name", "command"), CASES, ids=lambda c: repr(c)[:40])
async def test_non_utf8_argument_is_refused_and_nothing_is_written(
    town: Town,
    town_dir: Path,
    tt_env: dict[str, str],
    argv: list[bytes],
    name: str,
    command: str,
) -> None:
    await town.spawn_agent("bob")
    await town.tasks.list()
    before = await _redis_state(town)
    toml = (town_dir / "tinytown.toml").read_bytes()
    done = await trio.run_process(
        [sys.executable.encode(), b"-m", b"tinytown", *argv],
        cwd=town_dir,
        env=tt_env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last == (
        f"tt: argument {name}: not valid UTF-8 text (byte 0xe9) (see '{command} --help')"
    )
    assert done.stdout == b""
    assert await _redis_state(town) == before
    assert (town_dir / "tinytown.toml").read_bytes() == toml
    assert sorted(p.name for p in town_dir.iterdir() if p.name.startswith("tinytown")) == [
        "tinytown.toml"
    ]


def test_valid_text_still_passes(tt_in: Any, town_dir: Path) -> None:
    """The check refuses only what is not text: accented UTF-8 goes through."""
    done = tt_in("backlog", "add", "café ☕", cwd=town_dir)
    assert done.returncode == 0, done.stderr
    shown = tt_in("backlog", "list", cwd=town_dir)
    assert "café ☕" in shown.stdout


def test_the_error_names_a_character_that_is_not_a_byte() -> None:
    """A lone surrogate that did not come from argv bytes (e.g. pasted into the REPL)."""
    from tinytown.cli.parser import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["backlog", "add", "x\ud800"])
    assert exit_info.value.code == 2


def test_subprocess_argv_really_carries_the_bytes(tt_env: dict[str, str]) -> None:
    """Guards the test above: the child sees surrogate escapes, not replaced text."""
    code = "import sys; print(ascii(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable.encode(), b"-c", code.encode(), BAD], env=tt_env, capture_output=True
    )
    assert done.stdout.strip() == b"'caf\\udce9 \\udcff'"
