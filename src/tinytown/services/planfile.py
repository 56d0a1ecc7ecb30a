"""The plan file ``tasks.toml``: its format, its template, reading and checking it.

Every problem found names the file, the line and the field, e.g.
``tasks.toml:12: task 'api': unknown field 'stauts' (did you mean 'status'?).``
All problems are collected before anything is raised, so one run shows them all.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import attrs
import tomli_w

from tinytown.errors import InvalidInputError, NotFoundError
from tinytown.model import TaskState
from tinytown.services.tasks import MAX_DESCRIPTION

PLAN_FILE = "tasks.toml"
PLAN_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
TASK_FIELDS = ("id", "description", "agent", "status", "tags", "parent")
META_FIELDS = ("description", "default_agent")

TEMPLATE = """\
# tasks.toml: the town's plan. `tt sync push` puts it into Redis (again and again, safely:
# each id maps to one task); `tt sync pull` writes the tasks' state back here.
#
# [[tasks]] fields:
#   id           plan id, required and unique (letters, digits, '.', '_', '-')
#   description  what to do, required
#   agent        agent name, nickname or id; without it the task goes to the backlog
#   status       pending | assigned | running | completed | failed | cancelled
#                (push applies completed/failed/cancelled; pull writes the current state)
#   tags         list of strings, e.g. ["backend", "api"]
#   parent       the id of another task in this file
#
# [meta] (optional): description = "...", default_agent = "worker-1"

[[tasks]]
id = "design"
description = "Write a short design for the feature"
tags = ["design"]

[[tasks]]
id = "build"
description = "Implement the feature following the design"
parent = "design"
# agent = "worker-1"
"""


class PlanError(InvalidInputError):
    """The plan file is invalid; each problem names the file, the line and the field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@attrs.frozen
class PlanEntry:
    """One ``[[tasks]]`` table, checked."""

    id: str
    description: str
    line: int
    agent: str | None = None
    status: TaskState | None = None
    tags: tuple[str, ...] = ()
    parent: str | None = None


@attrs.frozen
class Plan:
    """A checked plan file: its entries in file order, ``[meta]``, and the raw tables."""

    path: Path
    entries: tuple[PlanEntry, ...]
    meta: dict[str, Any]
    raw: tuple[dict[str, Any], ...]
    text: str

    @property
    def shown(self) -> str:
        return shown_path(self.path)

    def key_line(self, entry: PlanEntry, key: str) -> int:
        return _key_line(self.text.splitlines(), entry.line, key)


def shown_path(path: Path) -> str:
    """The path as errors show it: relative to the current directory when inside it."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def default_path(root: Path | None, file: str | os.PathLike[str] | None = None) -> Path:
    """``--file`` if given, else ``tasks.toml`` in the town root (or the current directory)."""
    return Path(file) if file else (root or Path.cwd()) / PLAN_FILE


def write_template(path: Path, *, force: bool = False) -> Path:
    """Write the commented template (``tt plan --init``); refuse to replace a file."""
    if path.exists() and not force:
        raise InvalidInputError(f"{shown_path(path)} already exists; use --force to replace it.")
    write_atomic(path, TEMPLATE)
    return path


# -- reading and checking ---------------------------------------------------------------


def load_plan(path: Path) -> Plan:
    """Read and check a plan file. Raises NotFoundError or PlanError (all problems)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(
            f"No plan file {shown_path(path)}; create one with 'tt plan --init'."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"Cannot read {shown_path(path)}: {exc}.") from exc
    return parse_plan(path, text)


def parse_plan(path: Path, text: str) -> Plan:
    """Check ``text`` as the plan file ``path``; every problem is collected, then raised."""
    shown = shown_path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        at = found.group(1) if found else "1"
        reason = re.sub(r"\s*\(at line.*\)$", "", str(exc)) or "syntax error"
        raise PlanError([f"{shown}:{at}: invalid TOML: {reason}."]) from None
    lines = text.splitlines()
    problems: list[str] = []
    for key in data:
        if key not in ("tasks", "meta"):
            at_line = _table_line(lines, key)
            problems.append(f"{shown}:{at_line}: unknown top-level key {key!r} (use [[tasks]]).")
    meta = data.get("meta", {})
    meta_line = _table_line(lines, "meta")
    if not isinstance(meta, dict):
        problems.append(f"{shown}:{meta_line}: 'meta' must be a table.")
        meta = {}
    for key, value in meta.items():
        where = f"{shown}:{_key_line(lines, meta_line, key)}: meta"
        if key not in META_FIELDS:
            problems.append(f"{where}: unknown field {key!r}{_hint(key, META_FIELDS)}.")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: field {key!r} must be a non-empty string.")
    raw = data.get("tasks", [])
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        problems.append(f"{shown}:{_table_line(lines, 'tasks')}: 'tasks' must be [[tasks]].")
        raw = []
    headers = [i + 1 for i, ln in enumerate(lines) if re.match(r'\s*\[\[\s*"?tasks"?\s*\]\]', ln)]
    entries: list[PlanEntry] = []
    first_line: dict[str, int] = {}
    for index, table in enumerate(raw):
        line = headers[index] if index < len(headers) else _table_line(lines, "tasks")
        entry = _check_entry(table, index, line, lines, shown, problems)
        if entry is None:
            continue
        if entry.id in first_line:
            problems.append(
                f"{shown}:{line}: task {entry.id!r}: duplicate id"
                f" (first defined on line {first_line[entry.id]})."
            )
            continue
        first_line[entry.id] = line
        entries.append(entry)
    _check_parents(entries, lines, shown, problems)
    if problems:
        raise PlanError(problems)
    return Plan(path, tuple(entries), dict(meta), tuple(raw), text)


def _check_entry(
    table: dict[str, Any], index: int, line: int, lines: list[str], shown: str, out: list[str]
) -> PlanEntry | None:
    pid = table.get("id")
    label = f"task {pid!r}" if isinstance(pid, str) and pid else f"task #{index + 1}"
    before = len(out)

    def bad(key: str | None, problem: str) -> None:
        where = _key_line(lines, line, key) if key else line
        out.append(f"{shown}:{where}: {label}: {problem}.")

    for key in table:
        if key not in TASK_FIELDS:
            bad(key, f"unknown field {key!r}{_hint(key, TASK_FIELDS)}")
    for key in ("id", "description"):
        if key not in table:
            bad(None, f"missing required field {key!r}")
    if "id" in table and not (isinstance(pid, str) and PLAN_ID_RE.fullmatch(pid)):
        bad("id", "field 'id' must be 1-128 letters, digits, '.', '_' or '-'")
    description = table.get("description")
    if "description" in table:
        if not isinstance(description, str) or not description.strip():
            bad("description", "field 'description' must be a non-empty string")
        elif len(description) > MAX_DESCRIPTION:
            bad("description", f"field 'description' is longer than {MAX_DESCRIPTION} characters")
    for key in ("agent", "parent"):
        value = table.get(key)
        if key in table and not (isinstance(value, str) and value.strip()):
            bad(key, f"field {key!r} must be a non-empty string")
    status = None
    if "status" in table:
        try:
            status = (
                TaskState.parse(str(table["status"])) if isinstance(table["status"], str) else None
            )
        except ValueError:
            status = None
        if status is None:
            allowed = ", ".join(s.value for s in TaskState)
            bad("status", f"field 'status' is {table['status']!r}, not one of {allowed}")
    tags = table.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        bad("tags", "field 'tags' must be a list of non-empty strings")
        tags = []
    if len(out) > before:
        return None
    return PlanEntry(
        id=str(pid),
        description=str(description).strip(),
        line=line,
        agent=table.get("agent", "").strip() or None,
        status=status,
        tags=tuple(dict.fromkeys(t.strip() for t in tags)),
        parent=table.get("parent", "").strip() or None,
    )


def _check_parents(entries: list[PlanEntry], lines: list[str], shown: str, out: list[str]) -> None:
    by_id = {e.id: e for e in entries}
    reported: set[str] = set()
    for entry in entries:
        where = f"{shown}:{_key_line(lines, entry.line, 'parent')}: task {entry.id!r}"
        if entry.parent is None:
            continue
        if entry.parent not in by_id:
            out.append(f"{where}: field 'parent': no task {entry.parent!r} in this file.")
            continue
        chain = [entry.id]
        node = by_id.get(entry.parent)
        while node is not None and node.id not in chain:
            chain.append(node.id)
            node = by_id.get(node.parent) if node.parent else None
        if node is not None and node.id == entry.id and not reported & set(chain):
            reported.update(chain)
            out.append(f"{where}: field 'parent': cycle {' -> '.join([*chain, entry.id])}.")


def _key_line(lines: list[str], start: int, key: str) -> int:
    """The line of ``key = ...`` inside the table that starts on line ``start``."""
    pattern = re.compile(rf"""\s*["']?{re.escape(key)}["']?\s*=""")
    for number in range(start + 1, len(lines) + 1):
        text = lines[number - 1]
        if text.lstrip().startswith("["):
            break
        if pattern.match(text):
            return number
    return start


def _table_line(lines: list[str], key: str) -> int:
    pattern = re.compile(
        rf"""\s*(\[{{1,2}}\s*["']?{re.escape(key)}["']?\s*\]|{re.escape(key)}\s*=)"""
    )
    return next((i + 1 for i, text in enumerate(lines) if pattern.match(text)), 1)


def _hint(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def render(meta: dict[str, Any], tables: list[dict[str, Any]], header: list[str]) -> str:
    """The plan as TOML text: ``header`` comments, ``[meta]``, then one ``[[tasks]]`` per
    table with inline arrays (tomli_w alone would fold short tables into one inline list)."""
    out = [*header, ""] if header else []
    for name, body in ([("[meta]", meta)] if meta else []) + [("[[tasks]]", t) for t in tables]:
        out.append(name)
        out += [f"{key} = {_toml_value(value)}" for key, value in body.items()]
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).removeprefix("v = ").rstrip("\n")


def leading_comments(text: str) -> list[str]:
    """The comment block at the top of a file (kept when ``sync pull`` rewrites it)."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.lstrip().startswith("#") and line.strip():
            break
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return out


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (temporary file + rename: never half written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
