"""Input is validated at the boundary (issue 9, point 7): one `tt: ...` line, nothing
written, no traceback and no stray temp file, for undecodable text and out-of-range numbers."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.faultkit import FaultTown, one_error_line

BAD = b"\xff"  # not UTF-8: Python hands it to tt as a lone surrogate


def _snapshot(ft: FaultTown) -> tuple[bytes, int, int, int, list[str]]:
    return (
        (ft.root / "tinytown.toml").read_bytes(),
        ft.r.zcard(ft.key("tasks")),
        ft.r.llen(ft.key("backlog")),
        ft.r.hlen(ft.key("agents")),
        ft.inbox("bob"),
    )


def test_non_utf8_arguments_are_refused_cleanly(ft: FaultTown) -> None:
    ft.spawn("bob")
    before = _snapshot(ft)
    commands: list[tuple[str | bytes, ...]] = [
        ("send", "bob", BAD),
        ("send", "bob", b"half " + BAD + b" text", "--query"),
        ("assign", "bob", BAD),
        ("assign", "bob", "ok", "--tag", BAD),
        ("backlog", "add", BAD),
        ("config", "default_cli", BAD),
        ("config", "agent_clis.x", BAD),
        ("spawn", b"n" + BAD),
    ]
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        results = list(pool.map(lambda args: ft.tt(*args), commands))
    for args, result in zip(commands, results, strict=True):
        try:
            one_error_line(result, codes=(1, 2))
        except AssertionError as exc:
            raise AssertionError(f"tt {args!r}: {exc}") from None
    assert _snapshot(ft) == before
    assert not (ft.root / "tinytown.toml.tmp").exists()


def test_negative_numbers_are_refused(ft: FaultTown) -> None:
    ft.spawn("bob")
    before = _snapshot(ft)
    for args in (
        ("wait", "bob", "--timeout", "-1"),
        ("config", "runtime.kill_grace", "--", "-5"),
        ("config", "runtime.shutdown_grace", "--", "-1"),
    ):
        one_error_line(ft.tt(*args, timeout=15), codes=(1, 2))
    assert _snapshot(ft) == before
    assert not (ft.root / "tinytown.toml.tmp").exists()


@pytest.mark.parametrize("value", ["-5.0", '"abc"'])
def test_bad_setting_written_by_hand_is_refused_at_load(ft: FaultTown, value: str) -> None:
    path = ft.root / "tinytown.toml"
    text = path.read_text()
    assert "kill_grace = 0.5" in text
    path.write_text(text.replace("kill_grace = 0.5", f"kill_grace = {value}"))
    try:
        run = ft.tt("run", "--no-repl", timeout=15)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"tt run started with kill_grace = {value}") from None
    line = one_error_line(run)
    assert "kill_grace" in line, line
    assert "kill_grace" in one_error_line(ft.tt("status"))  # every command loads it
