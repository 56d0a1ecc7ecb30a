"""One agent CLI as the runtime drives it: its command, how to start a round (session,
MCP), and how to read the round's output.

Built by ``TownConfig.cli_spec`` from a preset or a ``[agent_clis.X]`` table; pure (no
I/O but reading the MCP config file handed to :meth:`CliSpec.round_argv` for codex).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tinytown.services.agentcli import presets

# The classifiers (their pattern tables, reset times, zoneinfo), the output readers and
# the report classes are imported when a round is read or a spec built, not with this
# module: every command loads the town's config, which checks its [agent_clis.X] tables
# with check_table (no round).
if TYPE_CHECKING:
    from tinytown.services.agentcli.classify import Patterns
    from tinytown.services.agentcli.report import RoundReport

#: How each format's CLI continues a session and takes an MCP config: the format names
#: the CLI family (a custom ``claude-json`` CLI is a claude).
SESSIONS = {"claude-json": "--resume", "codex-jsonl": "exec resume"}
MCP = {"claude-json": "--mcp-config", "codex-jsonl": "-c mcp_servers"}

#: The keys a ``[agent_clis.X]`` table may have.
TABLE_KEYS = (
    "command",
    "format",
    "prompt",
    "setup_patterns",
    "rate_limit_patterns",
    "transient_patterns",
)
#: Keys Rust Tinytown writes there, accepted and not used.
RUST_KEYS = ("name", "workdir", "env")

_NO_NETWORK = "waiting for network"


class CliSpecError(ValueError):
    """A ``[agent_clis.X]`` table that cannot be used (one sentence)."""


def _builtin() -> Patterns:
    """The built-in failure patterns (imported on first use: see the imports above)."""
    from tinytown.services.agentcli.classify import BUILTIN

    return BUILTIN


@attrs.frozen
class CliSpec:
    """How to run one agent CLI and read its rounds.

    ``argv``: the base command. ``format``: how it reports a round (one of
    :data:`presets.FORMATS`). ``prompt_on_stdin``: the prompt is written to its stdin
    (else the runtime appends it as the last argument). ``mcp``: how it takes an MCP
    config (``--mcp-config``, ``-c mcp_servers``) or None."""

    name: str
    argv: tuple[str, ...]
    format: str = "text"
    prompt_on_stdin: bool = True
    patterns: Patterns = attrs.field(factory=_builtin, repr=False)

    @property
    def mcp(self) -> str | None:
        return MCP.get(self.format)

    @property
    def sessions(self) -> str | None:
        """How it continues a session (``--resume``, ``exec resume``), or None."""
        return SESSIONS.get(self.format)

    @property
    def bypass_flags(self) -> list[str]:
        """The flags in its command that make it act without asking."""
        return presets.bypasses(self.argv)

    @property
    def bypasses_permissions(self) -> bool:
        return bool(self.bypass_flags)

    def round_argv(
        self, session_id: str | None, resume: bool, mcp_config: Path | None
    ) -> list[str]:
        """The command of one round: continuing ``session_id`` when ``resume`` is set and
        the CLI can (otherwise a fresh session; the id is never reused for a new one),
        with the MCP servers of ``mcp_config`` (a JSON file ``{"mcpServers": {name:
        {command, args, env}}}``, the form claude's ``--mcp-config`` reads) when the CLI
        takes them. Raises :class:`CliSpecError` if that file cannot be read for codex,
        which takes servers as ``-c`` overrides."""
        argv = list(self.argv)
        resume_id = session_id if resume and session_id and self.sessions else None
        if self.format == "claude-json":
            if resume_id:
                argv += ["--resume", resume_id]
            if mcp_config is not None:  # last: --mcp-config takes several values
                argv += ["--mcp-config", str(mcp_config)]
        elif self.format == "codex-jsonl":
            stdin_marker = argv[-1] == "-" and len(argv) > 1
            if stdin_marker:
                argv.pop()
            if mcp_config is not None:
                argv += codex_mcp_overrides(mcp_config)
            if resume_id:
                argv += ["resume", resume_id]
            if stdin_marker:
                argv.append("-")
        return argv

    def read(
        self,
        returncode: int | None,
        timed_out: bool,
        stdout: str,
        stderr: str,
        now: dt.datetime | None = None,
    ) -> RoundReport:
        """The round's report from its exit status and output (never raises)."""
        from tinytown.services.agentcli.classify import classify
        from tinytown.services.agentcli.results import READERS

        parsed = READERS[self.format](stdout, stderr)
        return classify(parsed, returncode, timed_out, stdout, stderr, self.patterns, now)

    def early_stop(self, line: str) -> RoundReport | None:
        """A report ending the round at once when ``line`` (stdout or stderr) proves it
        cannot succeed: codex waiting for the network never exits by itself."""
        if self.format == "codex-jsonl" and _NO_NETWORK in line:
            from tinytown.services.agentcli.report import Outcome, RoundReport

            words = line.strip()
            try:
                event = json.loads(words)
            except ValueError:
                event = None
            if isinstance(event, dict) and isinstance(event.get("message"), str):
                words = event["message"]
            return RoundReport(
                Outcome.TRANSIENT,
                "",
                " ".join(
                    f"{presets.program(self.argv)} cannot reach its service (no network?):"
                    f" {words}".split()
                ),
            )
        return None


def codex_mcp_overrides(mcp_config: Path) -> list[str]:
    """``-c mcp_servers.<name>.<key>=<TOML value>`` for each server of a claude-style
    MCP config file (codex has no flag that reads such a file)."""
    try:
        data = json.loads(mcp_config.read_text(encoding="utf-8"))
        servers = data["mcpServers"]
        if not isinstance(servers, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliSpecError(
            f"The MCP config {mcp_config} is not a readable mcpServers JSON file ({exc})."
        ) from None
    argv = []
    for name, server in servers.items():
        if not isinstance(server, dict):
            continue
        for key in ("command", "args", "url"):
            if key in server:
                argv += ["-c", f"mcp_servers.{name}.{key}={_toml(server[key])}"]
        for var, value in (server.get("env") or {}).items():
            argv += ["-c", f"mcp_servers.{name}.env.{var}={_toml(str(value))}"]
    return argv


def _toml(value: Any) -> str:
    """A TOML value: JSON strings and arrays of strings are valid TOML as they are."""
    if isinstance(value, list):
        return "[" + ",".join(_toml(str(v)) for v in value) + "]"
    return json.dumps(str(value))


def build(name: str, argv: list[str], table: Mapping[str, Any] | None = None) -> CliSpec:
    """The spec of CLI ``name`` running ``argv``, with its ``[agent_clis.X]`` table's
    format, prompt and patterns. Raises :class:`CliSpecError` naming the bad key."""
    fmt, prompt, extra = _read_table(name, argv, table or {})
    builtin = _builtin()
    patterns = builtin.extended(**extra) if extra else builtin
    return CliSpec(name, tuple(argv), fmt, prompt == "stdin", patterns)


def check_table(name: str, table: Mapping[str, Any]) -> None:
    """Raise :class:`CliSpecError` (naming the bad key) if ``[agent_clis.name]`` cannot be
    used: :func:`build`'s checks, without building (or importing) the classifiers."""
    _read_table(name, [name], table)


def _read_table(
    name: str, argv: list[str], table: Mapping[str, Any]
) -> tuple[str, str, dict[str, tuple[re.Pattern[str], ...]]]:
    """(format, prompt, the table's own patterns by kind: only kinds it has) of a table."""
    where = f"[agent_clis.{name}]"
    unknown = sorted(set(table) - set(TABLE_KEYS) - set(RUST_KEYS))
    if unknown:
        raise CliSpecError(
            f"{where} has unknown key {unknown[0]!r}; known keys: {', '.join(TABLE_KEYS)}."
        )
    fmt = table.get("format", presets.infer_format(argv))
    if fmt not in presets.FORMATS:
        raise CliSpecError(
            f"{where} format must be one of {', '.join(map(repr, presets.FORMATS))},"
            f" not {fmt!r}."
        )
    prompt = table.get("prompt", "stdin")
    if prompt not in ("stdin", "argument"):
        raise CliSpecError(f"{where} prompt must be 'stdin' or 'argument', not {prompt!r}.")
    extra = {}
    for kind in ("setup", "rate_limit", "transient"):
        key = f"{kind}_patterns"
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise CliSpecError(f"{where} {key} must be a list of strings, not {value!r}.")
        if value:
            from tinytown.services.agentcli.classify import compile_patterns

            try:
                extra[kind] = compile_patterns(value, f"{where} {key}")
            except ValueError as exc:
                raise CliSpecError(f"{exc}.") from None
    return fmt, prompt, extra
