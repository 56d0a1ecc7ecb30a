#!/usr/bin/env python3
"""A fake ``claude`` (Claude Code) for tests: the real flags the presets use, the real
output formats, and the real failures — driven by the scripted agent's directives.

    claude --print [--output-format text|json|stream-json] [--verbose]
           [--resume ID | --session-id ID] [--dangerously-skip-permissions]
           [--permission-mode MODE] [--mcp-config FILE...] [--max-budget-usd N]
           [--model M]                      prompt on stdin
    claude auth status                      {"loggedIn": ...}, exit 1 when not
    claude --version

The answer is what the directives print (see actors/fakecli.py for the shared ones:
``cost``, ``tokens``, ``session``, ``ratelimit [RESET-SECONDS]``, ``overloaded``,
``notloggedin``); ``--output-format json`` prints one ``result`` object as the real CLI
does (``session_id`` kept across ``--resume``; ``is_error`` true on failure). Its own
directives:

    rootrefuse    refuse as claude does for root (stderr only, exit 1)
    mcp           print "mcp <server names>" from --mcp-config files ("mcp -" if none)

Environment: ``FAKE_CLI_AS_ROOT=1`` makes ``--dangerously-skip-permissions`` and
``--permission-mode bypassPermissions`` refused as the real CLI refuses them for root
(unless ``IS_SANDBOX=1``); ``FAKE_CLI_NOT_LOGGED_IN=1`` fails every round (and ``auth
status``) as when not logged in; ``FAKE_CLI_LOG`` (see fakecli.py).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

import fakecli

VERSION = "2.1.197 (Claude Code)"
ROOT_REFUSAL = (
    "--dangerously-skip-permissions cannot be used with root/sudo privileges for security"
    " reasons"
)
NOT_LOGGED_IN = "Not logged in · Please run /login"
VALUED = {
    "--output-format", "--input-format", "--resume", "-r", "--session-id", "--permission-mode",
    "--max-budget-usd", "--model", "--allowedTools", "--allowed-tools", "--disallowedTools",
    "--append-system-prompt", "--system-prompt", "--max-turns", "--fallback-model",
}  # fmt: skip
FLAGS = {
    "--print", "-p", "--dangerously-skip-permissions", "--verbose", "--continue", "-c",
    "--fork-session", "--strict-mcp-config", "--debug",
}  # fmt: skip


def parse(argv: list[str]) -> tuple[dict[str, str], set[str], list[str]]:
    """(valued options, flags, MCP config files); unknown options exit as claude does."""
    options: dict[str, str] = {}
    flags: set[str] = set()
    mcp: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in VALUED:
            if not eq:
                i += 1
                if i >= len(argv):
                    fakecli.usage_error(f"error: option '{name} <value>' argument missing")
                value = argv[i]
            options[{"-r": "--resume"}.get(name, name)] = value
        elif arg == "--mcp-config":
            while i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                i += 1
                mcp.append(argv[i])
            if not mcp:
                fakecli.usage_error("error: option '--mcp-config <configs...>' argument missing")
        elif arg in FLAGS:
            flags.add({"-p": "--print", "-c": "--continue"}.get(arg, arg))
        elif arg.startswith("-"):
            fakecli.usage_error(f"error: unknown option '{arg}'")
        i += 1
    return options, flags, mcp


def mcp_servers(files: list[str]) -> list[str]:
    names: list[str] = []
    for path in files:
        try:
            with open(path, encoding="utf-8") as f:
                names += list(json.load(f)["mcpServers"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            fakecli.usage_error(f"Error: Invalid MCP configuration: {path}: {exc}")
    return names


def result(session: str, rnd: fakecli.Round, started: float, **fields: object) -> dict:
    spent = int((time.monotonic() - started) * 1000)
    return {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "api_error_status": None,
        "duration_ms": spent,
        "duration_api_ms": spent,
        "num_turns": 1,
        "result": rnd.answer,
        "stop_reason": "end_turn",
        "session_id": session,
        "total_cost_usd": rnd.cost,
        "usage": {
            "input_tokens": rnd.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": rnd.cached_tokens,
            "output_tokens": rnd.output_tokens,
            "service_tier": "standard",
        },
        "modelUsage": {},
        "permission_denials": [],
        "terminal_reason": "completed",
        "uuid": str(uuid.uuid4()),
        **fields,
    }


def failure(rnd: fakecli.Round, session: str, started: float) -> tuple[dict, int]:
    """The result object of a failed round, and the exit code."""
    word, arg = rnd.failure or ("fail", "")
    if word == "notloggedin":
        obj = result(session, fakecli.refused(NOT_LOGGED_IN), started, is_error=True)
        return {**obj, "stop_reason": "stop_sequence"}, 1
    if word == "ratelimit":
        if arg:  # the subscription limit names when it resets (a Unix time)
            text = f"Claude AI usage limit reached|{int(time.time() + float(arg))}"
        else:
            text = (
                'API Error: 429 {"type":"error","error":{"type":"rate_limit_error","message":'
                '"This request would exceed the rate limit for your organization. Please try'
                ' again later."}}'
            )
        refused = fakecli.refused(text)
        return result(session, refused, started, is_error=True, api_error_status=429), 1
    if word == "overloaded":
        text = (
            'API Error: 529 {"type":"error","error":{"type":"overloaded_error",'
            '"message":"Overloaded"}}'
        )
        refused = fakecli.refused(text)
        return result(session, refused, started, is_error=True, api_error_status=529), 1
    # `fail N`: the work itself failed
    return result(session, rnd, started, subtype="error_during_execution", is_error=True), (
        rnd.exit_code or 1
    )


def main() -> int:
    fakecli.log_run("claude")
    argv = sys.argv[1:]
    if argv[:1] in (["--version"], ["-v"]):
        print(VERSION)
        return 0
    if argv[:2] == ["auth", "status"]:
        logged_in = os.environ.get("FAKE_CLI_NOT_LOGGED_IN") != "1"
        method = "claude.ai" if logged_in else "none"
        status = {"loggedIn": logged_in, "authMethod": method, "apiProvider": "firstParty"}
        print(json.dumps(status))
        return 0 if logged_in else 1
    options, flags, mcp_files = parse(argv)
    bypass = "--dangerously-skip-permissions" in flags or (
        options.get("--permission-mode") == "bypassPermissions"
    )
    if bypass and os.environ.get("FAKE_CLI_AS_ROOT") == "1" and os.environ.get("IS_SANDBOX") != "1":
        fakecli.usage_error(ROOT_REFUSAL)
    fmt = options.get("--output-format", "text")
    if fmt not in ("text", "json", "stream-json"):
        fakecli.usage_error(
            f"error: option '--output-format <format>' argument '{fmt}' is invalid."
            " Allowed choices are text, json, stream-json."
        )
    if fmt == "stream-json" and "--verbose" not in flags:
        fakecli.usage_error(
            "Error: When using --print, --output-format=stream-json requires --verbose"
        )
    servers = mcp_servers(mcp_files)
    started = time.monotonic()
    prompt = fakecli.read_prompt()
    session = options.get("--resume") or options.get("--session-id") or fakecli.new_session()
    rnd = fakecli.run(
        prompt,
        session,
        "--resume" in options,
        stops=("rootrefuse",),
        extra={"mcp": lambda _: f"mcp {' '.join(servers) or '-'}"},
    )
    if rnd.failure and rnd.failure[0] == "rootrefuse":
        fakecli.usage_error(ROOT_REFUSAL)
    if os.environ.get("FAKE_CLI_NOT_LOGGED_IN") == "1":
        rnd.failure = ("notloggedin", "")
    code = 0
    if rnd.failure or rnd.exit_code:
        obj, code = failure(rnd, session, started)
    else:
        budget = options.get("--max-budget-usd")
        obj = result(session, rnd, started)
        if budget is not None and rnd.cost > float(budget):
            obj.update(subtype="error_max_budget_usd", is_error=True)
            obj["errors"] = [f"Reached maximum budget (${float(budget):g})"]
            code = 1
    if fmt == "json":
        fakecli.emit(obj)
    elif fmt == "stream-json":
        init = {
            "type": "system",
            "subtype": "init",
            "session_id": session,
            "tools": [],
            "mcp_servers": [{"name": n, "status": "connected"} for n in servers],
            "model": options.get("--model", "claude-fake"),
        }
        text = {"type": "text", "text": obj["result"]}
        said = {"type": "assistant", "message": {"role": "assistant", "content": [text]},
                "session_id": session}  # fmt: skip
        for event in (init, said, obj):
            fakecli.emit(event)
    else:
        print(obj["result"], flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
