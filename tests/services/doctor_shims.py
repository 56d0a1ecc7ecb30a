"""Tiny stand-ins for claude, codex and gemini, for ``tt doctor``'s tests.

They answer the free questions the doctor asks the way the real programs do (outputs
recorded in docs/agents.md#troubleshooting): ``--version``, ``claude auth status``,
``codex login status``, the preset's options with an empty prompt. Anything that would
reach a model in the real CLI (a non-empty prompt, any other gemini call) is appended to
``$FAKE_PAID_CALLS``, so a test can prove the doctor made no paid call.

``claude mcp list`` reports each server added with ``claude mcp add-json`` connected
(``FAKE_MCP=fail``: failed); with ``FAKE_MCP=handshake`` it starts the server and sends it
MCP's ``initialize``, as the real one does. Environment: ``FAKE_LOGGED_IN=1`` logs claude
and codex in; ``FAKE_HANG=1`` makes the login questions hang after writing the shim's pid
(and a child's) to ``$FAKE_PIDS``; ``FAKE_EUID`` is the user claude believes it runs as
(default: the real one).
"""

from __future__ import annotations

import sys
from pathlib import Path

_COMMON = r"""
import json, os, subprocess, sys, time

def paid(what):
    with open(os.environ.get("FAKE_PAID_CALLS", os.devnull), "a") as f:
        f.write(PROGRAM + " " + what + "\n")

def hang():
    child = subprocess.Popen(["sleep", "1000"])
    with open(os.environ["FAKE_PIDS"], "w") as f:
        f.write(f"{os.getpid()} {child.pid}\n")
    time.sleep(1000)

def handshake(entry):
    # Start the stdio server as claude does and send MCP's initialize: an answer with a
    # result is a connection.
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "fake-claude", "version": "0"}}}
    try:
        server = subprocess.Popen(
            [entry["command"], *entry.get("args", [])], env={**os.environ, **entry.get("env", {})},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return False
    try:
        server.stdin.write(json.dumps(hello) + "\n")
        server.stdin.flush()
        line = server.stdout.readline()
        return "result" in json.loads(line or "{}")
    except (OSError, ValueError):
        return False
    finally:
        server.kill()
        server.wait()

args = sys.argv[1:]
if args == ["--version"]:
    print(VERSION)
    sys.exit(0)
"""

_CLAUDE = (
    r"""
PROGRAM, VERSION = "claude", "2.1.197 (Claude Code)"
KNOWN = {"-p", "--print", "--output-format", "--permission-mode",
         "--dangerously-skip-permissions", "--mcp-config", "--resume"}
"""
    + _COMMON
    + r"""
if args[:2] == ["auth", "status"]:
    if os.environ.get("FAKE_HANG") == "1":
        hang()
    if os.environ.get("FAKE_LOGGED_IN") == "1":
        print(json.dumps({"loggedIn": True, "authMethod": "api_key", "apiProvider": "firstParty",
                          "apiKeySource": "ANTHROPIC_API_KEY"}, indent=2))
        sys.exit(0)
    print(json.dumps({"loggedIn": False, "authMethod": "none", "apiProvider": "firstParty"},
                     indent=2))
    sys.exit(1)
if args[:2] == ["mcp", "add-json"]:
    name, entry = args[-2], json.loads(args[-1])
    path = os.path.join(os.environ["HOME"], ".claude.json")
    with open(path, "w") as f:
        json.dump({"mcpServers": {name: entry}}, f)
    print(f"Added stdio MCP server {name} to user config")
    sys.exit(0)
if args[:2] == ["mcp", "list"]:
    path = os.path.join(os.environ["HOME"], ".claude.json")
    servers = json.load(open(path))["mcpServers"] if os.path.exists(path) else {}
    if not servers:
        print("No MCP servers configured. Use `claude mcp add` to add a server.")
    print("Checking MCP server health…\n")
    for name, entry in servers.items():
        mode = os.environ.get("FAKE_MCP", "")
        ok = mode != "fail" and (mode != "handshake" or handshake(entry))
        mark = "✔ Connected" if ok else "✘ Failed to connect"
        print(f"{name}: {entry['command']} {' '.join(entry['args'])} - {mark}")
    sys.exit(0)
for arg in args:
    root = int(os.environ.get("FAKE_EUID", os.geteuid())) == 0
    if arg in ("--dangerously-skip-permissions", "bypassPermissions") and root \
            and os.environ.get("IS_SANDBOX") != "1":
        print("--dangerously-skip-permissions cannot be used with root/sudo privileges for"
              " security reasons", file=sys.stderr)
        sys.exit(1)
for arg in args:
    if arg.startswith("-") and arg.split("=")[0] not in KNOWN:
        print(f"error: unknown option '{arg}'", file=sys.stderr)
        sys.exit(1)
prompt = sys.stdin.read()
if not prompt.strip():
    print("Error: Input must be provided either through stdin or as a prompt argument when"
          " using --print", file=sys.stderr)
    sys.exit(1)
paid("round")
print(json.dumps({"type": "result", "subtype": "success", "is_error": True,
                  "result": "Not logged in · Please run /login"}))
sys.exit(1)
"""
)

_CODEX = (
    r"""
PROGRAM, VERSION = "codex", "codex-cli 0.171.0"
KNOWN = {"--json", "--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check",
         "-", "-m", "-c"}
"""
    + _COMMON
    + r"""
print("WARNING: proceeding, even though we could not create PATH aliases", file=sys.stderr)
if args[:2] == ["login", "status"]:
    if os.environ.get("FAKE_HANG") == "1":
        hang()
    if os.environ.get("FAKE_LOGGED_IN") == "1":
        print("Logged in using an API key - sk-proj-***", file=sys.stderr)
        sys.exit(0)
    print("Not logged in", file=sys.stderr)
    sys.exit(1)
if args[:1] == ["exec"]:
    for arg in args[1:]:
        if arg.startswith("-") and arg not in KNOWN:
            print(f"error: unexpected argument '{arg}' found", file=sys.stderr)
            sys.exit(2)
    print("Reading prompt from stdin...", file=sys.stderr)
    if not sys.stdin.read().strip():
        print("No prompt provided via stdin.", file=sys.stderr)
        sys.exit(1)
    paid("exec")
    sys.exit(1)
paid(" ".join(args))
sys.exit(1)
"""
)

_GEMINI = (
    r"""
PROGRAM, VERSION = "gemini", "0.61.0"
"""
    + _COMMON
    + r"""
paid(" ".join(args) or "interactive")
print(json.dumps({"error": {"type": "Error", "message": "Please set an Auth method", "code": 41}}))
sys.exit(41)
"""
)

SHIMS = {"claude": _CLAUDE, "codex": _CODEX, "gemini": _GEMINI}

#: What must not leak into a doctor test from the user's environment: keys and logins the
#: checks read, and the stand-ins' own switches.
CLEARED_ENV = (
    "GEMINI_API_KEY",
    "GOOGLE_GENAI_USE_VERTEXAI",
    "GOOGLE_GENAI_USE_GCA",
    "GOOGLE_API_KEY",
    "CODEX_API_KEY",
    "OPENAI_API_KEY",
    "IS_SANDBOX",
    "FAKE_LOGGED_IN",
    "FAKE_HANG",
    "FAKE_MCP",
)


def install_shims(folder: Path) -> Path:
    """Write executable ``claude``, ``codex`` and ``gemini`` into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in SHIMS.items():
        path = folder / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)
    return folder
