"""``tinytown.toml``: the town's configuration file, and the CLI presets.

The file is the user's: ``tt config KEY VALUE`` (and :meth:`TownConfig.save`) edit it with
tomlkit, which keeps comments, order and formatting; only the changed values move. A
running town re-reads it when it changed (:meth:`TownConfig.refresh`, an ``os.stat``
per spawn, restart or reconcile request and per actor start; no polling).
"""

from __future__ import annotations

import math
import os
import shlex
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tinytown import townroot
from tinytown.errors import ConfigError, NotInitializedError
from tinytown.services import legacy
from tinytown.services.agentcli.presets import PRESET_COMMANDS
from tinytown.services.text import text_problem

if TYPE_CHECKING:
    from tinytown.services.agentcli.spec import CliSpec

CONFIG_FILE = townroot.CONFIG_FILE

#: The built-in CLI presets, name -> command (see services/agentcli/presets.py).
BUILTIN_CLIS: dict[str, str] = dict(PRESET_COMMANDS)


#: Settings with their defaults; ``tt config KEY VALUE`` accepts exactly these (plus
#: ``agent_clis.<name>``), each parsed to the default's type.
DEFAULTS: dict[str, Any] = {
    "default_cli": "claude",
    "redis.url": "",
    "redis.server": "",
    "runtime.round_timeout": 1800.0,
    "runtime.kill_grace": 5.0,
    "runtime.heartbeat_interval": 5.0,
    "runtime.shutdown_grace": 30.0,
    "runtime.max_restarts": 5,
    "runtime.log_tail_bytes": 4000,
    "runtime.log_max_bytes": 10 * 1024 * 1024,  # agent logs and runtime.log rotate here
    "runtime.log_keep": 3,  # rotated files kept (<name>.1 ... <name>.N)
    # Rust Tinytown's ``[agent] idle_timeout_secs``: an agent idle this long goes cold
    # (0 = never).
    "agent.idle_timeout_secs": 0,
    # A command run (no shell) when an agent asks, a task fails, or an agent finishes.
    "notify.command": "",
    "notify.timeout": 10.0,
    # Agent CLIs (issue 11): attempts before a real failure fails a task; tasks one round
    # takes; CLI processes at once in the town (0 = 2 x the CPU count); the first wait
    # after a rate limit that names no reset time (doubling up to an hour).
    "runtime.max_attempts": 3,
    "runtime.tasks_per_round": 1,
    "runtime.max_parallel_rounds": 0,
    "runtime.rate_limit_backoff": 60.0,
    # While `tt run` hosts the town, `tt` commands run in its command server (a process
    # that has imported them already; docs/architecture.md "The command server").
    "runtime.command_server": True,
    # Spending limits (0 = none): per agent, per task, and for the whole town.
    "budget.agent_usd": 0.0,
    "budget.agent_tokens": 0,
    "budget.task_usd": 0.0,
    "budget.task_tokens": 0,
    "budget.town_usd": 0.0,
    "budget.town_tokens": 0,
    # Workspaces (issue 12): "shared" (the town root) or "worktree" (one per agent).
    "workspace.mode": "shared",
    "workspace.base": "",  # the base branch; "" = the branch checked out at the root
    "workspace.check": "",  # a command run before a merge lands ("" = none)
    "workspace.on_conflict": "report",  # or "task": send the agent a task to resolve it
    "workspace.push": False,
    "workspace.autocommit": False,
    # MCP (issue 13): wire `tt mcp` into the rounds of CLIs that take MCP servers.
    "mcp.agents": True,
    "mcp.allow_spawn": False,
}


#: The allowed range of each numeric setting: (lowest, whether the lowest is allowed).
#: Timeouts and graces may be 0 (none), intervals and sizes must be positive, counts may
#: be 0. Every value must be finite.
RANGES: dict[str, tuple[float, bool]] = {
    "runtime.round_timeout": (0, True),  # 0: no limit (issue 17)
    "runtime.kill_grace": (0, True),
    "runtime.heartbeat_interval": (0, False),
    "runtime.shutdown_grace": (0, True),
    "runtime.max_restarts": (0, True),
    "runtime.log_tail_bytes": (0, True),
    "runtime.log_max_bytes": (0, False),
    "runtime.log_keep": (0, True),
    "agent.idle_timeout_secs": (0, True),
    "notify.timeout": (0, False),
    "runtime.max_attempts": (1, True),
    "runtime.tasks_per_round": (1, True),
    "runtime.max_parallel_rounds": (0, True),
    "runtime.rate_limit_backoff": (0, False),
    "budget.agent_usd": (0, True),
    "budget.agent_tokens": (0, True),
    "budget.task_usd": (0, True),
    "budget.task_tokens": (0, True),
    "budget.town_usd": (0, True),
    "budget.town_tokens": (0, True),
}


def check_setting(key: str, value: Any) -> Any:
    """Return ``value`` if it suits setting ``key`` (its default's type and its range),
    else raise ConfigError with one sentence naming the key."""
    default = DEFAULTS.get(key)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"Config key {key!r} needs true or false, not {value!r}.")
        return value
    if isinstance(default, int | float):
        kind = "an integer" if isinstance(default, int) else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"Config key {key!r} needs {kind}, not {value!r}.")
        if isinstance(default, int) and not isinstance(value, int):
            raise ConfigError(f"Config key {key!r} needs {kind}, not {value!r}.")
        if not math.isfinite(value):
            raise ConfigError(f"Config key {key!r} needs a finite number, not {value!r}.")
        low, inclusive = RANGES.get(key, (-math.inf, True))
        if value < low or (value == low and not inclusive):
            bound = f"{low:g} or more" if inclusive else f"more than {low:g}"
            raise ConfigError(f"Config key {key!r} must be {bound}, not {value!r}.")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"Config key {key!r} needs a string, not {value!r}.")
        problem = text_problem(value)
        if problem:
            raise ConfigError(f"Config key {key!r} {problem}.")
    return value


def find_town_root(start: str | os.PathLike[str] | None = None, *, search: bool = True) -> Path:
    """The directory holding ``tinytown.toml``: ``start`` itself, or (``search``) an ancestor
    (the rule is :func:`tinytown.townroot.find_root`)."""
    found = townroot.find_root(os.fspath(start or "."), search=search)
    if found is None:
        here = Path(start or ".").resolve()
        raise NotInitializedError(
            f"No town at {here} (no {CONFIG_FILE} found); run 'tt init' first."
        )
    return Path(found)


Stamp = tuple[int, int, int]


def _stamp(path: Path) -> Stamp | None:
    """What tells that the file changed: inode (an atomic replace), mtime and size."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@attrs.define
class TownConfig:
    """The parsed ``tinytown.toml`` of one town."""

    root: Path
    data: dict[str, Any]
    #: The file's stamp when ``data`` was read (None: not read from the file).
    stamp: Stamp | None = attrs.field(default=None, eq=False)

    @property
    def path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    @classmethod
    def load(cls, root: Path, *, check: bool = True) -> TownConfig:
        """Read ``tinytown.toml``. With ``check`` (the default) every known setting in it
        must suit its type and range (ConfigError names the file and the key); ``tt
        config`` loads without it, so a bad value can be corrected."""
        path = root / CONFIG_FILE
        stamp = _stamp(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise NotInitializedError(f"No town at {root}; run 'tt init' first.") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path} is not UTF-8 text: {exc.reason}.") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}.") from exc
        if not isinstance(data.get("name"), str):
            raise ConfigError(f"{path} has no 'name' string.")
        config = cls(root, data, stamp)
        if check:
            config.check()
        return config

    def changed(self) -> bool:
        """Whether the file on disk is not the one ``data`` was read from (one stat)."""
        return _stamp(self.path) != self.stamp

    def refresh(self) -> bool:
        """Re-read the file if it changed since it was read; return whether it did.

        Everything sharing this object (the runtime's context, the agent service) sees
        the new settings. A changed file that is not a valid town config raises
        ConfigError naming the file, and the settings in use stay as they were."""
        if not self.changed():
            return False
        fresh = TownConfig.load(self.root)
        if fresh.name != self.name:
            raise ConfigError(
                f"{self.path}: the town name changed from {self.name!r} to {fresh.name!r};"
                " a running town keeps its name (its Redis keys carry it)."
            )
        self.data, self.stamp = fresh.data, fresh.stamp
        return True

    def check(self) -> None:
        """Raise ConfigError (naming the file and the key) for a known setting whose value
        does not suit it."""
        for key in DEFAULTS:
            try:
                value = self._lookup(key)
            except KeyError:
                continue
            try:
                check_setting(key, value)
            except ConfigError as exc:
                raise ConfigError(f"{self.path}: {exc}") from None
        for name, entry in (self.data.get("agent_clis") or {}).items():
            if isinstance(entry, dict):
                from tinytown.services.agentcli.spec import CliSpecError, check_table

                try:
                    check_table(name, entry)
                except CliSpecError as exc:
                    raise ConfigError(f"{self.path}: {exc}") from None

    def _lookup(self, key: str) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(key)
            node = node[part]
        return node

    @classmethod
    def create(cls, root: Path, name: str) -> TownConfig:
        data: dict[str, Any] = {
            "name": name,
            "default_cli": "claude",
            "redis": {},
            "runtime": {
                "round_timeout": DEFAULTS["runtime.round_timeout"],
                "kill_grace": DEFAULTS["runtime.kill_grace"],
            },
            "agent_clis": {},
        }
        config = cls(root, data)
        config.save()
        return config

    def save(self) -> None:
        """Write ``data`` to the file, keeping the user's comments and formatting: the
        file is parsed with tomlkit and only the values that differ are changed, added or
        removed. Atomic (a crash never leaves half a config); the temporary file never
        stays behind, whatever fails."""
        try:
            existing = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            existing = ""
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Cannot read {self.path}: {exc}.") from exc
        # Imported here: only writing needs tomlkit (~8 ms); every command reads the file.
        import tomlkit
        import tomlkit.exceptions

        try:
            doc = tomlkit.parse(existing)
        except tomlkit.exceptions.TOMLKitError:
            doc = tomlkit.document()  # unreadable by hand: written afresh from the data
        try:
            _merge(doc, self.data)
            body = tomlkit.dumps(doc).encode("utf-8")
        except (UnicodeEncodeError, TypeError, ValueError) as exc:
            raise ConfigError(f"Cannot write {self.path}: {exc}.") from exc
        tmp = self.path.with_suffix(".toml.tmp")
        try:
            tmp.write_bytes(body)
            tmp.replace(self.path)
        except OSError as exc:
            raise ConfigError(f"Cannot write {self.path}: {exc.strerror or exc}.") from exc
        finally:
            tmp.unlink(missing_ok=True)
        self.stamp = _stamp(self.path)

    def get(self, key: str) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if key in DEFAULTS:
                    return DEFAULTS[key]
                raise ConfigError(f"Unknown config key {key!r}.")
            node = node[part]
        return node

    def set(self, key: str, value: str) -> Any:
        """Set ``key`` from text, checked against its type; returns the stored value."""
        parsed: Any
        for what, text in (("Config key", key), (f"The value for {key!r}", value)):
            problem = text_problem(text)
            if problem:  # refused before anything is written
                raise ConfigError(f"{what} {problem}.")
        if key.startswith("agent_clis.") and key.count(".") in (1, 2):
            name = key.split(".")[1]
            if not name or not shlex.split(value):
                raise ConfigError("A CLI preset needs a name and a non-empty command.")
            parsed, key = value, f"agent_clis.{name}.command"
        elif key not in DEFAULTS and key != "name":
            known = ", ".join(sorted([*DEFAULTS, "name", "agent_clis.<name>"]))
            raise ConfigError(f"Unknown config key {key!r}; known keys: {known}.")
        elif key == "name":
            raise ConfigError("The town name cannot be changed (its Redis keys carry it).")
        else:
            parsed = check_setting(key, _parse_like(DEFAULTS[key], key, value))
        if key == "redis.url" and _has_password(parsed):
            raise ConfigError(
                "Refusing to write a password into tinytown.toml; set REDIS_URL instead."
            )
        node = self.data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = parsed
        self.save()
        return parsed

    def setting(self, key: str) -> Any:
        """A runtime setting with its default (checked: a value that does not suit the
        setting raises ConfigError naming the file and the key, never a crash later)."""
        try:
            value = self.get(key)
        except ConfigError:
            return DEFAULTS[key]
        try:
            return check_setting(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None

    def clis(self) -> dict[str, str]:
        """Every CLI preset: built-ins overridden by ``[agent_clis.<name>]`` (except by
        Rust Tinytown's own preset command, which its ``tt init`` writes into every town:
        that keeps the preset of the same name here)."""
        out = dict(BUILTIN_CLIS)
        for name, entry in (self.data.get("agent_clis") or {}).items():
            command = entry.get("command") if isinstance(entry, dict) else entry
            if isinstance(command, str) and command.strip():
                if name in BUILTIN_CLIS and legacy.is_rust_preset(name, command):
                    continue
                out[name] = command
        return out

    def explain_missing_cli(self, cli: str, program: str) -> str:
        """Why CLI ``cli`` (whose program ``program`` is not found) cannot run, naming the
        config file that was used, in one sentence."""
        if cli not in self.clis():
            return (
                f"CLI {cli!r} is not defined in {self.path}, and no program {program!r}"
                " is installed or on PATH."
            )
        origin = "built-in preset" if cli in BUILTIN_CLIS and not self._custom(cli) else "preset"
        return (
            f"CLI {cli!r} ({origin} as of {self.path}) needs {program!r}, which is not"
            " installed or not on PATH."
        )

    def _custom(self, cli: str) -> bool:
        return cli in (self.data.get("agent_clis") or {})

    def resolve_cli(self, cli: str | None) -> tuple[str, list[str]]:
        """(preset name or raw command, argv) for ``cli``, default ``default_cli``."""
        cli = cli or str(self.data.get("default_cli") or "claude")
        cli = legacy.preset_for(cli, self.clis())  # Rust's full command lines -> presets
        command = self.clis().get(cli, cli)
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"CLI command {command!r} cannot be parsed: {exc}.") from exc
        if not argv:
            raise ConfigError(f"CLI {cli!r} has an empty command.")
        return cli, argv

    def cli_spec(self, cli: str | None) -> CliSpec:
        """How to run CLI ``cli`` (a preset name or a raw command; default
        ``default_cli``) and read its rounds: its ``[agent_clis.X]`` table's ``format``,
        ``prompt`` and failure patterns, else what its command's flags say. Raises
        ConfigError (naming the file) for a table that cannot be used."""
        # Imported here: the spec pulls the round classifiers (patterns, reset times,
        # zoneinfo), which the runtime needs and a one-shot command such as `tt send` not.
        from tinytown.services.agentcli.spec import CliSpecError, build

        name, argv = self.resolve_cli(cli)
        entry = (self.data.get("agent_clis") or {}).get(name)
        try:
            return build(name, argv, entry if isinstance(entry, dict) else None)
        except CliSpecError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None


def _merge(doc: Any, data: dict[str, Any]) -> None:
    """Make the tomlkit table ``doc`` hold ``data``, touching only what differs (so the
    comments and layout around unchanged values stay)."""
    for key in [k for k in doc if k not in data]:
        del doc[key]
    for key, value in data.items():
        current = doc.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            _merge(current, value)
        elif key not in doc or _plain(current) != value or type(_plain(current)) is not type(value):
            doc[key] = value


def _plain(value: Any) -> Any:
    """A tomlkit item as plain Python (``unwrap``), anything else as it is."""
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


def _parse_like(default: Any, key: str, value: str) -> Any:
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return value.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        kind = {bool: "true or false", int: "an integer", float: "a number"}[type(default)]
        raise ConfigError(f"Config key {key!r} needs {kind}, not {value!r}.") from None
    return value


def _has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    return bool(url) and urlsplit(url).password is not None
