"""``tinytown.toml``: the town's configuration file, and the CLI presets."""

from __future__ import annotations

import os
import shlex
import tomllib
from pathlib import Path
from typing import Any

import attrs
import tomli_w

from tinytown.errors import ConfigError, NotInitializedError

CONFIG_FILE = "tinytown.toml"

BUILTIN_CLIS: dict[str, str] = {
    "claude": "claude --print --dangerously-skip-permissions",
    "auggie": "auggie --print",
    "codex": "codex exec --dangerously-bypass-approvals-and-sandbox",
    "codex-mini": (
        "codex exec --dangerously-bypass-approvals-and-sandbox"
        ' -m gpt-5.4-mini -c model_reasoning_effort="medium"'
    ),
    "gemini": "gemini",
    "copilot": "gh copilot",
    "aider": "aider --yes --no-auto-commits --message",
    "cursor": "cursor",
}

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
}


def find_town_root(start: str | os.PathLike[str] | None = None, *, search: bool = True) -> Path:
    """The directory holding ``tinytown.toml``: ``start`` itself, or (``search``) an ancestor."""
    here = Path(start or ".").resolve()
    candidates = [here, *here.parents] if search else [here]
    for directory in candidates:
        if (directory / CONFIG_FILE).is_file():
            return directory
    raise NotInitializedError(f"No town at {here} (no {CONFIG_FILE} found); run 'tt init' first.")


@attrs.define
class TownConfig:
    """The parsed ``tinytown.toml`` of one town."""

    root: Path
    data: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    @classmethod
    def load(cls, root: Path) -> TownConfig:
        path = root / CONFIG_FILE
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise NotInitializedError(f"No town at {root}; run 'tt init' first.") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}.") from exc
        if not isinstance(data.get("name"), str):
            raise ConfigError(f"{path} has no 'name' string.")
        return cls(root, data)

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
        tmp = self.path.with_suffix(".toml.tmp")
        tmp.write_text(tomli_w.dumps(self.data), encoding="utf-8")
        tmp.replace(self.path)  # atomic: a crash never leaves half a config

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
            parsed = _parse_like(DEFAULTS[key], key, value)
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
        """A runtime setting with its default."""
        try:
            return self.get(key)
        except ConfigError:
            return DEFAULTS[key]

    def clis(self) -> dict[str, str]:
        """Every CLI preset: built-ins overridden by ``[agent_clis.<name>]``."""
        out = dict(BUILTIN_CLIS)
        for name, entry in (self.data.get("agent_clis") or {}).items():
            command = entry.get("command") if isinstance(entry, dict) else entry
            if isinstance(command, str) and command.strip():
                out[name] = command
        return out

    def resolve_cli(self, cli: str | None) -> tuple[str, list[str]]:
        """(preset name or raw command, argv) for ``cli``, default ``default_cli``."""
        cli = cli or str(self.data.get("default_cli") or "claude")
        command = self.clis().get(cli, cli)
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ConfigError(f"CLI command {command!r} cannot be parsed: {exc}.") from exc
        if not argv:
            raise ConfigError(f"CLI {cli!r} has an empty command.")
        return cli, argv


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
        kind = type(default).__name__
        raise ConfigError(f"Config key {key!r} needs a {kind}, not {value!r}.") from None
    return value


def _has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    return bool(url) and urlsplit(url).password is not None
