"""Compatibility with the Rust Tinytown (0.10): what a user coming from it brings along.

* **Hash-format records.** Rust stores agents and tasks as Redis *hashes* of flat strings
  at the very keys this project uses for its JSON records (``tt:<town>:agent:<uuid>``,
  ``tt:<town>:task:<uuid>``), with no name or task index. They are read here (listing,
  resolving by name, status) and reported as legacy in ``store.warnings`` until
  ``tt migrate --hash`` converts them (:mod:`tinytown.services.migrate`).
* **Legacy CLI strings.** ``default_cli`` or an agent's ``cli`` holding a whole command
  line (``codex --dangerously-bypass-approvals-and-sandbox``) maps to its preset, as
  Rust's ``normalize_cli_reference`` does: exact preset name, then a preset's exact
  command, then the preset whose program it runs with a subset of that preset's arguments.
* **``TINYTOWN_*`` variables**, honoured as Rust does: ``TINYTOWN_AGENT_ID``, then
  ``TINYTOWN_AGENT_NAME`` (who acts; ``TT_AGENT_ID`` wins) and ``TINYTOWN_REDIS_PASSWORD``
  (the password of a Rust config's Redis, or of an external Redis URL that has none).
* **Display labels.** Rust prints agents as ``Nickname [role]`` (``Nickname [name]``
  without a role) and accepts that label wherever an agent reference is.

Cancellation: every async function here only reads; cancelling one changes nothing.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

from tinytown.errors import (
    AmbiguousReferenceError,
    InvalidNameError,
    InvalidTransitionError,
    NotFoundError,
)
from tinytown.model import (
    Agent,
    AgentState,
    AgentType,
    SpawnMode,
    Task,
    TaskState,
    now,
    validate_agent_name,
)
from tinytown.model.ids import format_time, is_uuid, parse_time
from tinytown.model.nicknames import nickname_for
from tinytown.services.agentcli.presets import RUST_COMMANDS
from tinytown.store.client import ResponseError
from tinytown.store.records import Store

MIGRATE_HINT = "run 'tt migrate --hash' to convert it"


class LegacyRecordError(InvalidTransitionError):
    """A change was asked of a record still in the Rust hash format."""


def is_wrongtype(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis refusing a string command on a hash (a Rust record)."""
    return isinstance(exc, ResponseError) and str(exc).startswith("WRONGTYPE")


def refuse_change(what: str) -> LegacyRecordError:
    return LegacyRecordError(
        f"{what} is a Rust Tinytown record (a Redis hash) and cannot be changed here;"
        f" {MIGRATE_HINT}."
    )


# -- field readers: ValueError names the field --------------------------------------


def record_id(key: str, f: Mapping[str, Any]) -> str:
    """The uuid at the end of ``key``, checked against the record's ``id`` field."""
    key_id = key.rsplit(":", 1)[-1]
    if (text(f, "id") or key_id).lower() != key_id:
        raise ValueError(f"field 'id' does not match the key's id {key_id}")
    return key_id


def text(f: Mapping[str, Any], name: str) -> str | None:
    value = f.get(name)
    return None if value is None or value == "" else str(value)


def uuid_field(f: Mapping[str, Any], name: str) -> str | None:
    value = text(f, name)
    if value is not None and not is_uuid(value.lower()):
        raise ValueError(f"field {name!r} is not a UUID: {value!r}")
    return value.lower() if value else None


def time_field(f: Mapping[str, Any], name: str, default: str | None = "now") -> Any:
    value = text(f, name)
    if value is None:
        return now() if default == "now" else default
    try:
        return format_time(parse_time(value))
    except ValueError:
        raise ValueError(f"field {name!r} is not a timestamp: {value!r}") from None


def int_field(f: Mapping[str, Any], name: str) -> int:
    try:
        return int(f.get(name) or 0)
    except ValueError:
        raise ValueError(f"field {name!r} is not a number") from None


def agent_from_fields(
    key: str, f: Mapping[str, Any], presets: Mapping[str, str] | None = None
) -> Agent:
    """The agent a Rust hash (or old JSON) record describes. Raises ValueError, TypeError
    or InvalidNameError naming the defect. A ``cli`` holding a command line is mapped to
    its preset when ``presets`` are given."""
    agent_id = record_id(key, f)
    name = validate_agent_name(text(f, "name") or "")
    cli = text(f, "cli") or ""
    return Agent(
        id=agent_id,
        name=name,
        nickname=text(f, "nickname") or nickname_for(agent_id),
        cli=preset_for(cli, presets) if presets is not None and cli else cli,
        role_id=text(f, "role_id"),
        agent_type=AgentType(text(f, "agent_type") or "worker"),
        state=AgentState(text(f, "state") or "starting"),
        current_task=uuid_field(f, "current_task"),
        parent_agent_id=uuid_field(f, "parent_agent_id"),
        spawn_mode=SpawnMode.parse(text(f, "spawn_mode") or "fresh"),
        created_at=time_field(f, "created_at"),
        last_heartbeat=time_field(f, "last_heartbeat"),
        tasks_completed=int_field(f, "tasks_completed"),
        rounds_completed=int_field(f, "rounds_completed"),
    )


def task_from_fields(key: str, f: Mapping[str, Any], plan_id: str | None = None) -> Task:
    """The task a Rust hash (or old JSON) record describes (``tags`` a JSON array string).
    Raises ValueError naming the defect."""
    task_id = record_id(key, f)
    description = f.get("description")
    if not isinstance(description, str):
        raise ValueError("field 'description' is missing")
    created = time_field(f, "created_at")
    return Task(
        id=task_id,
        description=description,
        state=TaskState.parse(text(f, "state") or "pending"),
        assigned_to=uuid_field(f, "assigned_to"),
        created_at=created,
        updated_at=time_field(f, "updated_at", created),
        completed_at=time_field(f, "completed_at", None),
        result=text(f, "result"),
        parent_id=uuid_field(f, "parent_id"),
        tags=tuple(tags_field(f)),
        started_at=time_field(f, "started_at", None),
        plan_id=plan_id,
    )


def tags_field(f: Mapping[str, Any]) -> list[str]:
    tags = f.get("tags") or []
    try:
        tags = json.loads(tags) if isinstance(tags, str) else tags
    except ValueError:
        raise ValueError("field 'tags' is not a JSON list") from None
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError("field 'tags' is not a list of strings")
    return tags


# -- hash-format records of a town ----------------------------------------------------


async def hash_keys(store: Store, kind: str) -> list[str]:
    """Keys ``tt:<town>:<kind>:<uuid>`` holding a hash (Rust's format), by SCAN."""
    from tinytown.store import admin  # only for Rust records: not on every command's path

    found = await admin.scan(store, f"{store.keys.prefix}{kind}:*", kind="hash")
    return [k for k in found if k.count(":") == 3 and is_uuid(k.rsplit(":", 1)[-1])]


async def _read(store: Store, kind: str, keys: Sequence[str] | None) -> list[tuple[str, Any]]:
    from tinytown.store import admin

    keys = await hash_keys(store, kind) if keys is None else keys
    return list(zip(keys, await admin.hashes(store, keys), strict=True))


async def hash_agents(
    store: Store, presets: Mapping[str, str] | None = None, keys: Sequence[str] | None = None
) -> list[Agent]:
    """The town's agents in Rust's hash format, each noted as legacy in
    ``store.warnings`` (malformed ones noted as such and skipped)."""
    out = []
    for key, fields in await _read(store, "agent", keys):
        if not fields:
            continue  # gone since the scan
        try:
            agent = agent_from_fields(key, fields, presets)
        except (ValueError, TypeError, InvalidNameError) as exc:
            store.warnings.append(f"Malformed Rust agent hash at {key}: {exc}.")
            continue
        out.append(agent)
    if out:
        names = ", ".join(a.name for a in out[:5]) + (", …" if len(out) > 5 else "")
        what = f"Agent {names} is" if len(out) == 1 else f"{len(out)} agents ({names}) are"
        store.warnings.append(
            f"{what} in Rust Tinytown's hash format (read-only here); run 'tt migrate"
            f" --hash' to convert {'it' if len(out) == 1 else 'them'}."
        )
    return out


async def hash_tasks(store: Store, keys: Sequence[str] | None = None) -> list[Task]:
    """The town's tasks in Rust's hash format (noted as legacy, like :func:`hash_agents`)."""
    out = []
    for key, fields in await _read(store, "task", keys):
        if not fields:
            continue
        try:
            out.append(task_from_fields(key, fields))
        except (ValueError, TypeError) as exc:
            store.warnings.append(f"Malformed Rust task hash at {key}: {exc}.")
    if out:
        what = "1 task is" if len(out) == 1 else f"{len(out)} tasks are"
        store.warnings.append(
            f"{what} in Rust Tinytown's hash format (read-only here); run 'tt migrate"
            f" --hash' to convert {'it' if len(out) == 1 else 'them'}."
        )
    return out


async def hash_agent(
    store: Store, agent_id: str, presets: Mapping[str, str] | None = None
) -> Agent | None:
    """The agent with ``agent_id`` if its record is a Rust hash, else None."""
    found = await hash_agents(store, presets, [store.keys.agent(agent_id)])
    return found[0] if found else None


async def hash_task(store: Store, task_id: str) -> Task | None:
    """The task with ``task_id`` if its record is a Rust hash, else None."""
    found = await hash_tasks(store, [store.keys.task(task_id)])
    return found[0] if found else None


# -- legacy CLI strings ---------------------------------------------------------------


def preset_for(cli: str, presets: Mapping[str, str]) -> str:
    """The preset name for ``cli`` as Rust normalises it, else ``cli`` unchanged.

    A preset name stays; a preset's exact command (spacing aside) gives that preset; a
    command line running a preset's program with only arguments that preset also has
    (``codex --dangerously-bypass-approvals-and-sandbox`` -> ``codex``) gives that
    preset. Any other command line (``claude --model opus``) stays a raw command."""
    if cli in presets:
        return cli
    try:
        argv = shlex.split(cli)
    except ValueError:
        return cli
    if not argv:
        return cli
    parsed: list[tuple[str, list[str]]] = []
    for name, command in presets.items():
        try:
            parsed.append((name, shlex.split(command)))
        except ValueError:
            continue
    for name, preset in parsed:
        if preset == argv:
            return name
    for name, command in RUST_COMMANDS.items():  # Rust's preset, since changed here
        if name in presets and shlex.split(command) == argv:
            return name
    program = os.path.basename(argv[0])
    for name, preset in parsed:
        if name == program and preset and set(argv[1:]) <= set(preset[1:]):
            return name
    for name, preset in parsed:  # a preset of another name running that program
        if preset and os.path.basename(preset[0]) == program and set(argv[1:]) <= set(preset[1:]):
            return name
    return cli


def is_rust_preset(name: str, command: str) -> bool:
    """Whether ``command`` is Rust Tinytown's built-in command for preset ``name``."""
    try:
        return name in RUST_COMMANDS and shlex.split(command) == shlex.split(RUST_COMMANDS[name])
    except ValueError:
        return False


# -- TINYTOWN_* variables ----------------------------------------------------------------

def agent_id_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """``TINYTOWN_AGENT_ID`` as an agent id (None when unset or not a UUID)."""
    env = os.environ if env is None else env
    agent_id = env.get("TINYTOWN_AGENT_ID", "").strip().lower()
    return agent_id if is_uuid(agent_id) else None


class _Resolver(Protocol):
    async def resolve_id(self, ref: str, *, allow_supervisor: bool = True) -> str: ...


async def agent_id_from_name(agents: _Resolver, env: Mapping[str, str] | None = None) -> str | None:
    """The agent ``TINYTOWN_AGENT_NAME`` names (any agent reference), or None when unset or
    naming no single agent (then the supervisor acts, as when nothing is set)."""
    env = os.environ if env is None else env
    name = env.get("TINYTOWN_AGENT_NAME", "").strip()
    if not name:
        return None
    try:
        return await agents.resolve_id(name, allow_supervisor=False)
    except (NotFoundError, AmbiguousReferenceError, InvalidTransitionError):
        return None


def url_with_password(url: str | None, env: Mapping[str, str] | None = None) -> str | None:
    """``url`` with ``TINYTOWN_REDIS_PASSWORD`` as its password when it has none (a
    ``redis://``/``rediss://`` URL; a Unix socket URL gets ``?password=``)."""
    env = os.environ if env is None else env
    password = env.get("TINYTOWN_REDIS_PASSWORD", "")
    if not url or not password:
        return url
    parts = urlsplit(url)
    if parts.password is not None or "password=" in parts.query:
        return url
    if parts.scheme == "unix":  # urlunsplit would drop the empty authority ("unix:/path")
        return f"{url}{'&' if parts.query else '?'}password={quote(password, safe='')}"
    user = quote(parts.username, safe="") if parts.username else ""
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def rust_redis_url(config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> str | None:
    """The TCP Redis a Rust ``tinytown.toml`` names (``[redis] use_socket = false`` with
    ``host``/``port``/``password``/``tls_enabled``: Rust's central Redis on 16379 by
    default; ``TINYTOWN_REDIS_PASSWORD`` overrides its password, as in Rust), else None.
    Rust's socket mode uses ``.tt/redis.sock``, the embedded server's own socket, so it
    needs nothing here."""
    env = os.environ if env is None else env
    redis = config.get("redis")
    if not isinstance(redis, Mapping) or redis.get("use_socket", True) is not False:
        return None
    host = str(redis.get("host") or "127.0.0.1")
    port = redis.get("port") or 6379
    scheme = "rediss" if redis.get("tls_enabled") is True else "redis"
    password = env.get("TINYTOWN_REDIS_PASSWORD") or redis.get("password")
    auth = f":{quote(str(password), safe='')}@" if password else ""
    return f"{scheme}://{auth}{host}:{port}"


# -- display labels -----------------------------------------------------------------------


def display_label(agent: Agent) -> str:
    """Rust's ``display_label``: ``Nickname [role]``, or ``Nickname [name]`` without a
    role (or with the ``default`` role)."""
    role = agent.role_id if agent.role_id and agent.role_id != "default" else None
    return f"{agent.nickname or agent.name} [{role or agent.name}]"


def matches_label(agent: Agent, ref: str) -> bool:
    """Whether ``ref`` is the agent's display label (case and inner spacing aside)."""
    return " ".join(ref.split()).lower() == display_label(agent).lower()
