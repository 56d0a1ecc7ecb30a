"""`tt towns --prune`: forget towns whose directory is gone, and say which."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.cli.clihelp import RunIn


def test_towns_prune_removes_deleted_towns_and_says_which(tt_in: RunIn, tmp_path: Path) -> None:
    keep, drop = tmp_path / "keep", tmp_path / "drop"
    for root in (keep, drop):
        root.mkdir()
        assert tt_in("init", cwd=root).returncode == 0
        assert tt_in("down", cwd=root).returncode in (0, 1)
    shutil.rmtree(drop)
    listed = json.loads(tt_in("towns", "--json", cwd=tmp_path).stdout)
    assert {t["path"] for t in listed} == {str(keep), str(drop)}
    pruned = tt_in("towns", "--prune", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout == f"Removed drop ({drop}): directory gone.\n"
    after = json.loads(tt_in("towns", "--json", cwd=tmp_path).stdout)
    assert [t["path"] for t in after] == [str(keep)]
    again = tt_in("towns", "--prune", "--json", cwd=tmp_path)
    assert json.loads(again.stdout) == {"removed": []}
    none = tt_in("towns", "--prune", cwd=tmp_path)
    assert none.stdout == "Nothing to prune: every registered town still exists.\n"
