"""The architecture holds (issue 10, points 1 and 3), checked on the source with ``ast``:

* one door to Redis: outside ``tinytown/store/`` no module runs raw commands
  (``.execute(``, ``.pipeline(``, ``.run_script(``, ``.dedicated(`` on a client or
  connection), reaches through a ``.redis`` attribute, or imports the Lua scripts or
  the raw ``Connection``/``Script`` types; services, runtime and front ends use the
  store's named operations;
* the import graph of ``src/tinytown`` has no circle (imports inside functions and under
  ``TYPE_CHECKING`` count too) and no import from a lower layer to a higher one:
  model < store < services < runtime < cli < repl < entry points.

Self-contained on purpose (no tool outside the repository): CI runs it as it is.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import attrs

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tinytown"

#: Layer of each top-level part of the package, lowest first.
LAYERS = {
    "model": 0,
    "errors": 0,
    # Standard library only, imported before anything else by the `tt` program: which town
    # a command line names, the launcher's protocol and client, deferred imports, long
    # Unix socket paths.
    "townroot": 0,
    "launcher": 0,
    "deferral": 0,
    "unixaddress": 0,
    "store": 1,
    "services": 2,
    "": 2,  # tinytown/__init__.py: the Python API (re-exports the services' Town)
    "runtime": 3,
    "cli": 4,
    "townhall": 4,  # the MCP server: a front end beside cli (which imports it lazily)
    "repl": 5,
    "entry": 6,  # the console-script entry points: the only place cli and repl meet
    "forkserver": 6,  # the command server: runs entry.main in forked children
    "__main__": 6,
}
LAYER_NAMES = ["model/errors", "store", "services", "runtime", "cli", "repl", "entry points"]

#: Methods only a Redis client or connection has.
CLIENT_ONLY = {"pipeline", "run_script", "dedicated"}
#: Methods whose name other objects share: flagged when called on something named like a
#: client or a connection.
CLIENT_LIKE = {"execute", "send", "read_reply"}
CLIENT_NAME = re.compile(r"redis|conn", re.IGNORECASE)
#: What outside store/ may not import: the Lua scripts and raw connection types.
RAW_MODULES = {"tinytown.store.scripts"}
RAW_NAMES = {"tinytown.store.client": {"Connection", "Script"}}


@attrs.frozen
class Module:
    name: str  # dotted
    path: Path
    tree: ast.Module

    @property
    def part(self) -> str:
        """The top-level part: 'store', 'cli', ... ('' for the package itself)."""
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else ""

    def where(self, node: ast.AST) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{getattr(node, 'lineno', 0)}"


def modules() -> list[Module]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append(Module(".".join(parts), path, ast.parse(path.read_text(), str(path))))
    return out


def _last_name(node: ast.expr) -> str:
    """The rightmost identifier of a receiver expression (``self.rt.redis`` -> redis)."""
    while isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def raw_redis_uses(module: Module) -> Iterator[str]:
    chained = {id(node.value) for node in ast.walk(module.tree) if isinstance(node, ast.Attribute)}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func.attr
            receiver = node.func.value
            if method in CLIENT_ONLY or (
                method in CLIENT_LIKE and CLIENT_NAME.search(_last_name(receiver))
            ):
                yield f"{module.where(node)}: raw Redis call .{method}(...)"
        elif isinstance(node, ast.Attribute) and node.attr == "redis":
            # Reading the client out of something else (town.redis, self.store.redis) hands
            # out the raw door; self.redis is an object's own field.
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id == "self") or id(node) in chained:
                yield f"{module.where(node)}: reaches the Redis client through .redis"
        elif isinstance(node, ast.ImportFrom) and node.module:
            target = _absolute(module, node)
            banned = RAW_NAMES.get(target, set())
            names = {alias.name for alias in node.names}
            if target in RAW_MODULES or names & banned:
                yield f"{module.where(node)}: imports raw Redis pieces from {target}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in RAW_MODULES:
                    yield f"{module.where(node)}: imports {alias.name}"


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.name.split(".")
    if not module.path.name == "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: Module, known: set[str]) -> Iterator[tuple[str, ast.AST]]:
    """(imported tinytown module, import node) for every import in the module."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tinytown":
                    yield _known(alias.name, known), node
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node)
            if target.split(".")[0] != "tinytown":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in known else _known(target, known)), node


def _known(name: str, known: set[str]) -> str:
    while name not in known and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def graph() -> tuple[dict[str, Module], dict[str, dict[str, ast.AST]]]:
    mods = {m.name: m for m in modules()}
    edges: dict[str, dict[str, ast.AST]] = {name: {} for name in mods}
    for name, module in mods.items():
        for target, node in imports(module, set(mods)):
            if target != name and target in mods:
                edges[name].setdefault(target, node)
    return mods, edges


def circles(edges: dict[str, dict[str, ast.AST]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _layer(module: Module) -> int:
    return LAYERS[module.part]


# -- the tests ------------------------------------------------------------------------------


def test_one_door_to_redis() -> None:
    offences = sorted(
        {
            offence
            for module in modules()
            if module.part != "store"
            for offence in raw_redis_uses(module)
        },
        key=_by_place,
    )
    assert not offences, (
        "Raw Redis access outside src/tinytown/store/ (use or add a named store operation):\n"
        + "\n".join(offences)
    )


def _by_place(offence: str) -> tuple[str, int, str]:
    path, line, what = offence.split(":", 2)
    return path, int(line), what


def test_no_import_circles() -> None:
    mods, edges = graph()
    found = circles(edges)
    lines = []
    for component in found:
        lines.append("circle: " + " <-> ".join(component))
        members = set(component)
        for name in component:
            for target, node in sorted(edges[name].items()):
                if target in members:
                    lines.append(f"  {mods[name].where(node)}: imports {target}")
    assert not found, "Import circles in src/tinytown:\n" + "\n".join(lines)


def test_no_upward_imports() -> None:
    mods, edges = graph()
    offences = []
    for name, targets in sorted(edges.items()):
        module = mods[name]
        for target, node in sorted(targets.items()):
            low, high = _layer(module), _layer(mods[target])
            if high > low:
                offences.append(
                    f"{module.where(node)}: {name} ({LAYER_NAMES[low]}) imports "
                    f"{target} ({LAYER_NAMES[high]})"
                )
    assert not offences, (
        "Imports from a lower layer to a higher one "
        f"({' < '.join(LAYER_NAMES)}):\n" + "\n".join(offences)
    )


def test_every_part_has_a_layer() -> None:
    assert {m.part for m in modules()} <= set(LAYERS)


# -- the checker itself ---------------------------------------------------------------------


def _fake(name: str, source: str) -> Module:
    rel = Path(*name.split(".")).with_suffix(".py")
    return Module(name, SRC / rel, ast.parse(source))


def test_the_checker_finds_what_it_should() -> None:
    bad = _fake(
        "tinytown.services.bad",
        "from tinytown.store.scripts import TAKE\n"
        "from tinytown.store.client import Connection, Redis\n"
        "async def f(town, conn, redis):\n"
        "    await town.redis.execute('GET', 'k')\n"
        "    await town.store.redis.pipeline([])\n"
        "    await conn.execute('PING')\n"
        "    await redis.execute('PING')\n"
        "    await town.store.lists.run_script(TAKE, [], [])\n"
        "    async with town.store.redis.dedicated() as c:\n"
        "        pass\n"
        "    client = town.redis\n",
    )
    found = list(raw_redis_uses(bad))
    lines = sorted({int(f.split(":")[1]) for f in found})
    assert lines == [1, 2, 4, 5, 6, 7, 8, 9, 11], found
    fine = _fake(
        "tinytown.services.fine",
        "from tinytown.store.client import Redis, ResponseError\n"
        "class Town:\n"
        "    def __init__(self, redis):\n"
        "        self.redis = redis\n"
        "    async def run(self, line):\n"
        "        await self.execute(line)\n"
        "        return await self.store.events.recent(5)\n",
    )
    assert list(raw_redis_uses(fine)) == []


def test_the_circle_finder_finds_circles() -> None:
    node = ast.Pass()
    edges: dict[str, dict[str, ast.AST]] = {
        "a": {"b": node},
        "b": {"c": node},
        "c": {"a": node},
        "d": {"a": node},
    }
    assert circles(edges) == [["a", "b", "c"]]
    assert circles({"a": {"b": node}, "b": {}}) == []
