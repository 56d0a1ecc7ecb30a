"""Free checks of one agent CLI for ``tt doctor``: installed, logged in, options accepted.

Every check here is free: it asks the CLI something that never reaches a model
(``--version``, ``claude auth status``, ``codex login status``, the preset's own options
with an empty prompt, which the CLI refuses before any call), or it reads the
environment and settings files. Each probe runs in its own process group with a timeout;
when it ends, times out or is cancelled, the whole group is killed and the probe reaped.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from tinytown.services.doctor.base import Check, CliTarget, Level, program_kind
from tinytown.services.doctor.gemini import gemini_login, gemini_trust
from tinytown.services.doctor.probe import Probe, probe
from tinytown.services.eventformat import one_line

#: Keys codex exec can use without a login.
CODEX_KEY_ENV = ("CODEX_API_KEY", "OPENAI_API_KEY")

#: claude's options that bypass its permission prompts (refused as root).
CLAUDE_BYPASS = ("--dangerously-skip-permissions", "--allow-dangerously-skip-permissions")
ROOT_REFUSAL = "cannot be used with root/sudo privileges"

#: Options that take a value, per CLI, so a probe can tell an option's value from a prompt.
_VALUE_OPTIONS = {
    "claude": frozenset(
        "--permission-mode --model --output-format --input-format --settings"
        " --append-system-prompt --system-prompt --max-budget-usd --max-turns --allowedTools"
        " --allowed-tools --disallowedTools --disallowed-tools --fallback-model --add-dir"
        " --agent --setting-sources --effort".split()
    ),
    "codex": frozenset(
        "-m --model -c --config -s --sandbox -p --profile -C --cd --color -o"
        " --output-last-message --output-schema --add-dir -i --image".split()
    ),
}


def locate(program: str, *, cwd: Path, path: str) -> str | None:
    """Where exec would find ``program`` (a path with a slash is relative to ``cwd``)."""
    if os.sep in program:
        full = cwd / program
        return str(full) if full.is_file() and os.access(full, os.X_OK) else None
    return shutil.which(program, path=path)


async def check_installed(target: CliTarget, timeout: float) -> tuple[Check, str | None]:
    """Is the program found where a round would look (its PATH, its directory)? The
    check, and the program's path when found (with ``--version``'s answer in the check)."""
    program = target.argv[0]
    where = locate(program, cwd=target.cwd, path=target.env.get("PATH", os.defpath))
    if where is None:
        return (
            Check(
                target.subject,
                "installed",
                Level.FAIL,
                f"{program!r} is not installed or not on PATH; install it"
                " (bash scripts/install-real-clis.sh installs claude, codex and gemini"
                " into .real-clis/) or fix the preset.",
            ),
            None,
        )
    answer = await probe([where, "--version"], timeout=timeout, env=target.env, cwd=target.cwd)
    version = next((ln.strip() for ln in answer.stdout.splitlines() if ln.strip()), "")
    if answer.returncode != 0 or not version:
        why = (
            "timed out"
            if answer.timed_out
            else answer.error or answer.last_line() or (f"exit {answer.returncode}")
        )
        return Check(
            target.subject,
            "installed",
            Level.WARN,
            f"{where} found, but '--version' did not answer ({why}).",
        ), where
    return Check(target.subject, "installed", Level.OK, f"{where}, version {version}."), where


async def check_login(target: CliTarget, program: str, timeout: float) -> Check:
    """Logged in, where the CLI can say so for free; ``skip`` for CLIs that cannot."""
    kind = target.kind
    if kind == "claude":
        return await _claude_login(target, program, timeout)
    if kind == "codex":
        return await _codex_login(target, program, timeout)
    if kind == "gemini":
        return gemini_login(target)
    return Check(
        target.subject,
        "login",
        Level.SKIP,
        f"{os.path.basename(program)} has no known free login check.",
    )


async def _claude_login(target: CliTarget, program: str, timeout: float) -> Check:
    answer = await probe(
        [program, "auth", "status"], timeout=timeout, env=target.env, cwd=target.cwd
    )
    try:
        status = json.loads(answer.stdout)
        logged_in = status["loggedIn"]
    except (ValueError, KeyError, TypeError):
        return Check(
            target.subject,
            "login",
            Level.WARN,
            f"'claude auth status' did not say whether it is logged in ({_why(answer)}).",
        )
    if logged_in is True:
        how = status.get("authMethod") or "?"
        source = status.get("apiKeySource")
        return Check(
            target.subject,
            "login",
            Level.OK,
            f"logged in ({how}{', ' + str(source) if source else ''}).",
        )
    return Check(
        target.subject,
        "login",
        Level.FAIL,
        "not logged in ('claude auth status': loggedIn false); run 'claude auth"
        " login' as the user who runs the town, or set ANTHROPIC_API_KEY for"
        " 'tt run'.",
    )


async def _codex_login(target: CliTarget, program: str, timeout: float) -> Check:
    answer = await probe(
        [program, "login", "status"], timeout=timeout, env=target.env, cwd=target.cwd
    )
    said = _meaningful(answer)
    if answer.returncode == 0:
        return Check(target.subject, "login", Level.OK, f"{said or 'logged in'}.")
    if answer.returncode is None:
        return Check(
            target.subject,
            "login",
            Level.WARN,
            f"'codex login status' did not answer ({_why(answer)}).",
        )
    keys = [name for name in CODEX_KEY_ENV if target.env.get(name)]
    if keys:
        return Check(
            target.subject,
            "login",
            Level.WARN,
            f"'codex login status' says {said or 'not logged in'!r}, but {keys[0]}"
            " is set; 'codex login --with-api-key' makes it the login.",
        )
    return Check(
        target.subject,
        "login",
        Level.FAIL,
        f"{said or 'not logged in'} ('codex login status'); run 'codex login' as"
        " the user who runs the town (or 'codex login --with-api-key').",
    )


def bypass_refused_as_root(argv: Sequence[str], euid: int, env: Mapping[str, str]) -> bool:
    """Whether claude will refuse ``argv``'s permission bypass: root, a bypass option,
    and no ``IS_SANDBOX=1`` (claude's own escape for real sandboxes)."""
    if euid != 0 or program_kind(argv) != "claude" or env.get("IS_SANDBOX") == "1":
        return False
    args = list(argv[1:])
    if any(arg in CLAUDE_BYPASS for arg in args) or "--permission-mode=bypassPermissions" in args:
        return True
    return any(
        a == "--permission-mode" and b == "bypassPermissions" for a, b in itertools.pairwise(args)
    )


def probe_safe(argv: Sequence[str]) -> bool:
    """Whether ``argv`` carries no prompt of its own, so running it with an empty stdin
    cannot reach a model: every argument is an option or an option's value (``-`` is
    "read stdin")."""
    kind = program_kind(argv)
    args = list(argv[1:])
    if kind == "codex":
        if not args or args[0] != "exec":
            return False
        args = args[1:]
    elif kind != "claude" or not ({"-p", "--print"} & set(args)):
        return False
    values = _VALUE_OPTIONS[kind]
    expect_value = False
    for arg in args:
        if expect_value:
            expect_value = False
        elif arg in values:
            expect_value = True
        elif not (arg.startswith("-")):
            return False
    return True


async def check_options(target: CliTarget, program: str, timeout: float) -> Check:
    """Are the preset's options accepted for the user who runs the town? claude and codex
    are asked with an empty prompt, which they refuse before any call, after checking the
    options; otherwise only the root rule is checked."""
    argv = [program, *target.argv[1:]]
    if bypass_refused_as_root(target.argv, target.euid, target.env):
        return Check(target.subject, "options", Level.FAIL, ROOT_SUMMARY)
    if target.kind == "gemini":
        return gemini_trust(target)
    if not probe_safe(target.argv):
        return Check(
            target.subject,
            "options",
            Level.SKIP,
            "not probed (only claude -p and codex exec presets can be asked for free).",
        )
    answer = await probe(argv, timeout=timeout, env=target.env, cwd=target.cwd)
    said = _meaningful(answer)
    if ROOT_REFUSAL in answer.output:
        return Check(target.subject, "options", Level.FAIL, ROOT_SUMMARY)
    if "Input must be provided" in answer.output or "No prompt provided" in answer.output:
        return Check(target.subject, "options", Level.OK, "the preset's options are accepted.")
    if "unknown option" in answer.output or "unexpected argument" in answer.output:
        return Check(
            target.subject,
            "options",
            Level.FAIL,
            f"the CLI refuses the preset's options: {said}; fix the preset"
            " ([agent_clis] in tinytown.toml) or update the CLI.",
        )
    return Check(
        target.subject,
        "options",
        Level.WARN,
        f"an empty prompt did not get the expected refusal ({_why(answer)}).",
    )


ROOT_SUMMARY = (
    'running as root, claude refuses --dangerously-skip-permissions ("cannot be used with'
    ' root/sudo privileges"); use the claude-safe preset, a non-root user, or IS_SANDBOX=1'
    " if this machine really is a sandbox (docs/agents.md#troubleshooting)."
)


def _meaningful(answer: Probe) -> str:
    """The last line a probe printed that is not one of the CLI's warnings."""
    for text in (answer.stderr, answer.stdout):
        lines = [
            ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING:")
        ]
        if lines:
            return one_line(lines[-1])
    return ""


def _why(answer: Probe) -> str:
    if answer.timed_out:
        return "timed out"
    if answer.error:
        return answer.error
    said = _meaningful(answer)
    return f"exit {answer.returncode}" + (f": {said}" if said else "")
