"""The town registry (``$TT_HOME/towns.toml``): registering, pruning, and the test suite
never touching the user's own."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tinytown.services.registry import prune_towns, register_town, registered_towns, tt_home


def test_the_suite_never_uses_the_users_registry() -> None:
    assert os.environ.get("TT_HOME")
    assert tt_home() != Path.home() / ".tt"


def test_prune_forgets_towns_whose_directory_or_config_is_gone(tmp_path: Path) -> None:
    alive, no_config, gone = tmp_path / "alive", tmp_path / "noconf", tmp_path / "gone"
    for root in (alive, no_config):
        root.mkdir()
    (alive / "tinytown.toml").write_text('name = "alive"\n')
    for root in (alive, no_config, gone):
        register_town(root, root.name)
    assert prune_towns(dry_run=True) == {str(no_config): "noconf", str(gone): "gone"}
    assert len(registered_towns()) == 3  # a dry run changes nothing
    assert prune_towns() == {str(no_config): "noconf", str(gone): "gone"}
    assert registered_towns() == {str(alive): "alive"}
    assert prune_towns() == {}


def test_concurrent_registrations_lose_nothing(tmp_path: Path) -> None:
    roots = [tmp_path / f"t{i}" for i in range(16)]
    threads = [threading.Thread(target=register_town, args=(r, r.name)) for r in roots]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(registered_towns()) == {str(r) for r in roots}
