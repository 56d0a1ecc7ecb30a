"""Free checks of gemini for ``tt doctor``: its auth method and its folder trust.

gemini has no status command: both are read from its environment and its files under
``~/.gemini`` (``settings.json``, ``trustedFolders.json``), the places its own messages
name. Nothing is run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tinytown.services.agentcli.presets import flag_value
from tinytown.services.doctor.base import Check, CliTarget, Level

#: Environment variables that give gemini an auth method (its own error names the first
#: three); GOOGLE_API_KEY counts with Vertex AI.
GEMINI_AUTH_ENV = (
    "GEMINI_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_GCA",
    "GOOGLE_API_KEY",
)


def gemini_login(target: CliTarget) -> Check:
    """gemini has no status command: an auth method is an environment variable or the
    ``security.auth.selectedType`` of ``~/.gemini/settings.json`` (its own error says so)."""
    found = [name for name in GEMINI_AUTH_ENV if target.env.get(name)]
    if found:
        return Check(target.subject, "login", Level.OK, f"auth from the environment ({found[0]}).")
    home = Path(target.env.get("HOME") or Path.home())
    settings = home / ".gemini" / "settings.json"
    chosen = _gemini_auth_type(settings)
    if chosen:
        return Check(target.subject, "login", Level.OK, f"auth method {chosen!r} in {settings}.")
    return Check(
        target.subject,
        "login",
        Level.FAIL,
        "no auth method: set GEMINI_API_KEY (or GOOGLE_GENAI_USE_VERTEXAI /"
        f" GOOGLE_GENAI_USE_GCA) for 'tt run', or choose one in {settings}"
        " (run 'gemini' once in a terminal).",
    )


def _gemini_auth_type(settings: Path) -> str:
    try:
        data = json.loads(settings.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    auth = (
        (data.get("security") or {}).get("auth") if isinstance(data.get("security"), dict) else None
    )
    chosen = auth.get("selectedType") if isinstance(auth, dict) else None
    chosen = chosen or data.get("selectedAuthType")  # older settings files
    return chosen if isinstance(chosen, str) else ""


def gemini_trust(target: CliTarget) -> Check:
    """gemini keeps ``--approval-mode yolo``/``auto_edit`` only in a folder it trusts
    (else: 'Approval mode overridden to "default" because the current folder is not
    trusted.'): ``--skip-trust``, or a rule of its trustedFolders.json (the longest path
    containing the folder; ``TRUST_PARENT`` covers the rule's parent)."""
    argv = list(target.argv)
    mode = flag_value(argv, "--approval-mode") or ("yolo" if {"-y", "--yolo"} & set(argv) else "")
    if mode not in ("yolo", "auto_edit"):
        return Check(target.subject, "options", Level.SKIP, "gemini's options are not probed.")
    if "--skip-trust" in argv:
        return Check(
            target.subject,
            "options",
            Level.OK,
            f"--skip-trust keeps --approval-mode {mode} in the town's folder.",
        )
    path = Path(
        target.env.get("GEMINI_CLI_TRUSTED_FOLDERS_PATH")
        or Path(target.env.get("HOME") or Path.home()) / ".gemini" / "trustedFolders.json"
    )
    if _gemini_trusts(path, target.cwd):
        return Check(
            target.subject,
            "options",
            Level.OK,
            f"gemini trusts {target.cwd} ({path}), so --approval-mode {mode} holds.",
        )
    return Check(
        target.subject,
        "options",
        Level.WARN,
        f"gemini does not trust {target.cwd}, so it runs --approval-mode {mode} as"
        " 'default' (tools that need approval are refused); add --skip-trust to the"
        " preset, or trust the folder once in an interactive gemini.",
    )


def _gemini_trusts(path: Path, folder: Path) -> bool:
    try:
        rules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(rules, dict):
        return False
    here = os.path.realpath(folder)
    best, level = -1, ""
    for rule, trust in rules.items():
        base = os.path.dirname(rule) if trust == "TRUST_PARENT" else rule
        base = os.path.realpath(base)
        inside = here == base or here.startswith(base.rstrip(os.sep) + os.sep)
        if inside and len(rule) > best:
            best, level = len(rule), str(trust)
    return level in ("TRUST_FOLDER", "TRUST_PARENT")
