"""docs/cli.md is generated from the parser: it must match what the parser says now."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_cli_docs", REPO / "scripts" / "gen_cli_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_docs_are_current() -> None:
    committed = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == _generator().render(), (
        "docs/cli.md is stale: run 'python scripts/gen_cli_docs.py'"
    )


def test_cli_docs_cover_every_command() -> None:
    text = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    for heading in ("## `tt spawn`", "### `tt task complete`", "### `tt backlog assign-all`"):
        assert heading in text
    assert "`--query`" in text and "[--task | --query | --info | --ack]" in text
