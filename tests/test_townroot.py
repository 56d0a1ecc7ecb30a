"""Which town a command line is about (tinytown/townroot.py): the rules the launcher and
the command line share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinytown.townroot import CONFIG_FILE, find_root, locate, town_option


def make_town(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_FILE).write_text("")
    return path


def test_the_nearest_ancestor_with_a_town_file(tmp_path: Path) -> None:
    town = make_town(tmp_path / "town")
    deep = town / "a" / "b"
    deep.mkdir(parents=True)
    assert find_root(str(deep)) == str(town.resolve())
    assert find_root(str(deep), search=False) is None
    assert find_root(str(town), search=False) == str(town.resolve())
    assert find_root(str(tmp_path), search=False) is None


def test_an_agents_worktree_belongs_to_the_town_above_it(tmp_path: Path) -> None:
    town = make_town(tmp_path / "town")
    worktree = make_town(town / ".tt" / "worktrees" / "ann")  # a committed copy of the file
    (worktree / "src").mkdir()
    assert find_root(str(worktree / "src")) == str(town.resolve())
    assert find_root(str(worktree)) == str(town.resolve())
    assert find_root(str(worktree), search=False) == str(worktree.resolve())


def test_locate_prefers_the_option_then_here_then_the_agents_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = make_town(tmp_path / "here")
    other = make_town(tmp_path / "other")
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    monkeypatch.chdir(here)
    assert locate(str(other), {}) == str(other.resolve())
    assert locate(None, {"TT_TOWN_DIR": str(other)}) == str(here.resolve())
    monkeypatch.chdir(nowhere)
    assert locate(None, {"TT_TOWN_DIR": str(other)}) == str(other.resolve())
    assert locate(None, {"TT_TOWN_DIR": str(nowhere)}) is None
    assert locate(None, {}) is None


@pytest.mark.parametrize(
    ("argv", "town"),
    [
        (["-t", "x", "send"], "x"),
        (["--town", "x", "send"], "x"),
        (["--town=x", "send"], "x"),
        (["-tx", "send"], "x"),
        (["send", "-t", "x"], None),  # after the command: the command's parser reads it
        (["-t"], None),
        ([], None),
    ],
)
def test_the_town_option_before_the_command(argv: list[str], town: str | None) -> None:
    assert town_option(argv) == town
