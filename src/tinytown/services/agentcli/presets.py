"""The built-in CLI presets: the command each runs, and what its flags mean.

A preset's *format* (how its CLI reports a round) is not stored here: it is read from the
command's own flags (:func:`infer_format`), so ``[agent_clis.claude] command = "claude
--print"`` (no JSON) is read as text, and a raw ``claude --model opus --print
--output-format json`` gets the claude parser without any configuration.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

#: The formats a CLI can report in (``format = ...`` in ``[agent_clis.X]``).
FORMATS = ("claude-json", "codex-jsonl", "gemini-json", "text")

_CODEX = "codex exec --json --dangerously-bypass-approvals-and-sandbox --skip-git-repo-check"

#: name -> command line. The prompt always goes on stdin (aider reads it through
#: ``--message-file /dev/stdin``; codex through its trailing ``-``).
PRESET_COMMANDS: dict[str, str] = {
    "claude": "claude --print --output-format json --dangerously-skip-permissions",
    # Without the bypass: edits are accepted, other tools (shell commands) are refused
    # in print mode; works as root, for worktrees and containers.
    "claude-safe": "claude --print --output-format json --permission-mode acceptEdits",
    "auggie": "auggie --print",
    "codex": f"{_CODEX} -",
    "codex-mini": (
        f'{_CODEX} -m gpt-5.4-mini -c model_reasoning_effort="medium" -'
    ),
    # Sandboxed: commands run in codex's workspace-write sandbox (no network, writes only
    # inside the workspace); exec never asks for approval.
    "codex-safe": "codex exec --json --sandbox workspace-write --skip-git-repo-check -",
    "gemini": "gemini --output-format json --approval-mode yolo",
    "gemini-safe": "gemini --output-format json --approval-mode auto_edit",
    "copilot": "gh copilot",
    "aider": "aider --yes-always --no-auto-commits --no-pretty --message-file /dev/stdin",
    "cursor": "cursor",
}

#: The commands of Rust Tinytown's presets (0.10), which ``default_cli`` or an agent
#: record from it may hold verbatim; each maps to the preset of that name here.
RUST_COMMANDS: dict[str, str] = {
    "claude": "claude --print --dangerously-skip-permissions",
    "codex": "codex exec --dangerously-bypass-approvals-and-sandbox",
    "codex-mini": (
        "codex exec --dangerously-bypass-approvals-and-sandbox"
        ' -m gpt-5.4-mini -c model_reasoning_effort="medium"'
    ),
    "aider": "aider --yes --no-auto-commits --message",
}

#: Flags (or flag=value pairs) that make a CLI act without asking: what each means,
#: for the safety notice and docs/agents.md.
BYPASS_FLAGS: dict[str, str] = {
    "--dangerously-skip-permissions": "runs every tool, shell commands included, unasked",
    "--permission-mode=bypassPermissions": "runs every tool, shell commands included, unasked",
    "--dangerously-bypass-approvals-and-sandbox": (
        "runs every command unasked and outside codex's sandbox"
    ),
    "--yolo": "runs every tool, shell commands included, unasked",
    "-y": "runs every tool, shell commands included, unasked",
    "--approval-mode=yolo": "runs every tool, shell commands included, unasked",
    "--yes-always": "answers yes to every confirmation",
    "--yes": "answers yes to every confirmation",
}

#: The preset without the bypass, for each preset that has one.
SAFER = {"claude": "claude-safe", "codex": "codex-safe", "codex-mini": "codex-safe",
         "gemini": "gemini-safe"}  # fmt: skip

#: Bypass flags too common to count for any program but these.
_ONLY_FOR = {"-y": "gemini", "--yes": "aider", "--yolo": "gemini"}


def program(argv: Sequence[str]) -> str:
    return os.path.basename(argv[0]) if argv else ""


def flag_value(argv: Sequence[str], *names: str) -> str | None:
    """The value of the first of ``names`` in ``argv`` (``--x v`` or ``--x=v``)."""
    for i, arg in enumerate(argv):
        for name in names:
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(name + "="):
                return arg[len(name) + 1 :]
    return None


def infer_format(argv: Sequence[str]) -> str:
    """The format a command line reports in, from its program and flags."""
    prog = program(argv)
    if prog == "claude":
        if flag_value(argv, "--output-format") in ("json", "stream-json"):
            return "claude-json"
    elif prog == "codex":
        if "exec" in argv and "--json" in argv:
            return "codex-jsonl"
    elif prog == "gemini" and flag_value(argv, "--output-format", "-o") == "json":
        return "gemini-json"
    return "text"


def bypasses(argv: Sequence[str]) -> list[str]:
    """The permission-skipping flags in ``argv``, normalised to ``--flag`` or
    ``--flag=value`` (the keys of :data:`BYPASS_FLAGS`)."""
    found = []
    for flag in BYPASS_FLAGS:
        if _ONLY_FOR.get(flag, program(argv)) != program(argv):
            continue
        name, _, value = flag.partition("=")
        if value:
            if flag_value(argv, name) == value:
                found.append(flag)
        elif name in argv[1:]:
            found.append(flag)
    return found
