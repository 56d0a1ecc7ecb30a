"""The front ends' place in the layers, checked on the source (the import-circle tool
finds circles, not a lower layer reaching up, nor raw Redis outside the store)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import tinytown

SRC = Path(tinytown.__file__).parent


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, at any depth (inside functions too)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_the_cli_never_imports_the_repl() -> None:
    """The REPL is built on the CLI; the CLI reaches it only through the console that
    ``tinytown.entry`` hands it, never by an import, not even inside a function."""
    found = [
        (path.relative_to(SRC).as_posix(), name)
        for path in sorted((SRC / "cli").rglob("*.py"))
        for name in _imports(path)
        if name.startswith(("tinytown.repl", "tinytown.entry"))
    ]
    assert found == []


def test_nothing_below_the_front_ends_imports_them() -> None:
    lower = [p for d in ("model", "store", "services", "runtime") for p in (SRC / d).rglob("*.py")]
    found = [
        (path.relative_to(SRC).as_posix(), name)
        for path in sorted(lower)
        for name in _imports(path)
        if name.startswith(("tinytown.cli", "tinytown.repl", "tinytown.entry"))
    ]
    assert found == []


def test_the_repl_and_the_cli_entry_use_no_raw_redis() -> None:
    """One door to Redis: the REPL and ``tt``'s entry reach it through named operations
    of the services and the store, never ``.redis.execute``/``pipeline``/... themselves."""
    files = [*sorted((SRC / "repl").rglob("*.py")), SRC / "cli" / "main.py", SRC / "entry.py"]
    found = [
        (path.relative_to(SRC).as_posix(), node.lineno)
        for path in files
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and node.attr in ("redis", "dedicated", "run_script")
    ]
    assert found == []
