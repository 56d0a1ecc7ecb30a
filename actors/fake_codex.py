#!/usr/bin/env python3
"""A fake ``codex`` (codex-cli) for tests, driven by the scripted agent's directives.

    codex exec [--json] [--dangerously-bypass-approvals-and-sandbox]
               [--skip-git-repo-check] [-c KEY=VALUE]... [-m MODEL] [-s MODE]
               [resume SESSION_ID] [-|PROMPT]
    codex login status        "Not logged in" (exit 1) or "Logged in using ChatGPT"
    codex --version

With ``--json`` it prints the real JSONL events: ``thread.started`` (the thread id is the
resumed session's), ``turn.started``, an ``item.completed`` agent message holding the
answer, ``turn.completed`` with the usage (or ``error`` + ``turn.failed``). Outside a git
repository it refuses without ``--skip-git-repo-check``, as the real one does. The
shared directives are in actors/fakecli.py; its own:

    nonetwork    print the real "Reconnecting..." events, then "Reconnecting... waiting
                 for network" every 0.2 s forever (the real one never exits by itself)
    mcp          print "mcp <names>" of the -c mcp_servers.<name>.command overrides

Environment: ``FAKE_CLI_NOT_LOGGED_IN=1`` fails rounds as without a login (unless
``nonetwork``: the real one then only waits for the network), and ``login status`` says
so; ``FAKE_CLI_LOG`` (see fakecli.py).
"""

from __future__ import annotations

import os
import sys
import time

import fakecli

VERSION = "codex-cli 0.171.0"
DISCONNECTED = (
    "stream disconnected before completion: failed to lookup address information:"
    " Name does not resolve"
)
WAITING = "Reconnecting... waiting for network (Connection failed: error sending request)"
UNAUTHORIZED = (
    "unexpected status 401 Unauthorized: Missing bearer or basic authentication in header"
)
VALUED = {"-c", "--config", "-m", "--model", "-s", "--sandbox", "-o", "--output-last-message",
          "-C", "--cd", "-p", "--profile", "--output-schema", "--enable", "--disable"}  # fmt: skip
FLAGS = {"--json", "--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check",
         "--full-auto", "--oss", "--last", "--all", "--ephemeral"}  # fmt: skip


def bad_argument(arg: str) -> None:
    fakecli.usage_error(
        f"error: unexpected argument '{arg}' found\n\n"
        f"  tip: to pass '{arg}' as a value, use '-- {arg}'\n\n"
        "Usage: codex exec [OPTIONS] [PROMPT]\n"
        "       codex exec [OPTIONS] <COMMAND> [ARGS]\n\n"
        "For more information, try '--help'.",
        2,
    )


def parse(argv: list[str]) -> tuple[set[str], list[str], str | None, str | None]:
    """(flags, -c overrides, resumed session id, prompt argument) of ``codex exec ...``."""
    flags: set[str] = set()
    overrides: list[str] = []
    resume: str | None = None
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in VALUED:
            if i + 1 >= len(argv):
                fakecli.usage_error(f"error: a value is required for '{arg}' but none was given", 2)
            i += 1
            if arg in ("-c", "--config"):
                overrides.append(argv[i])
        elif arg in FLAGS:
            flags.add(arg)
        elif arg == "-" or not arg.startswith("-"):
            positional.append(arg)
        else:
            bad_argument(arg)
        i += 1
    if positional[:1] == ["resume"]:
        positional.pop(0)
        if positional and positional[0] != "-" and "--last" not in flags:
            resume = positional.pop(0)
    if len(positional) > 1:
        bad_argument(positional[1])
    return flags, overrides, resume, positional[0] if positional else None


def in_git_repo() -> bool:
    here = os.getcwd()
    while True:
        if os.path.exists(os.path.join(here, ".git")):
            return True
        parent = os.path.dirname(here)
        if parent == here:
            return False
        here = parent


def main() -> int:
    fakecli.log_run("codex")
    argv = sys.argv[1:]
    if argv[:1] in (["--version"], ["-V"]):
        print(VERSION)
        return 0
    if argv[:2] == ["login", "status"]:
        if os.environ.get("FAKE_CLI_NOT_LOGGED_IN") == "1":
            print("Not logged in")
            return 1
        print("Logged in using ChatGPT")
        return 0
    if argv[:1] != ["exec"]:
        fakecli.usage_error("fake codex: only 'exec', 'login status' and '--version' exist", 2)
    flags, overrides, resume, prompt_arg = parse(argv[1:])
    if "--skip-git-repo-check" not in flags and not in_git_repo():
        fakecli.usage_error(
            "Not inside a trusted directory and --skip-git-repo-check was not specified."
        )
    if prompt_arg in (None, "-"):
        prompt = fakecli.read_prompt()
    else:
        prompt = prompt_arg
    if not prompt.strip():
        fakecli.usage_error("No prompt provided via stdin.")
    servers = [
        o.split(".")[1] for o in overrides if o.startswith("mcp_servers.") and ".command=" in o
    ]
    json_mode = "--json" in flags
    thread = resume or fakecli.new_session()

    def event(obj: dict) -> None:
        if json_mode:
            fakecli.emit(obj)

    event({"type": "thread.started", "thread_id": thread})
    event({"type": "turn.started"})
    rnd = fakecli.run(
        prompt,
        thread,
        resume is not None,
        stops=("nonetwork",),
        extra={"mcp": lambda _: f"mcp {' '.join(servers) or '-'}"},
    )
    no_network = (rnd.failure or ("", ""))[0] == "nonetwork"
    if os.environ.get("FAKE_CLI_NOT_LOGGED_IN") == "1" and not no_network:
        rnd.failure = ("notloggedin", "")  # without a network it never gets to hear so
    word, arg = rnd.failure or ("", "")
    if word == "nonetwork":
        for n in range(2, 6):
            event({"type": "error", "message": f"Reconnecting... {n}/5 ({DISCONNECTED})"})
        fallback = f"Falling back from WebSockets to HTTPS transport. {DISCONNECTED}"
        item = {"id": "item_0", "type": "error", "message": fallback}
        event({"type": "item.completed", "item": item})
        while True:  # never exits by itself, like the real one
            event({"type": "error", "message": WAITING})
            if not json_mode:
                print(f"ERROR: {WAITING}", file=sys.stderr, flush=True)
            time.sleep(0.2)
    error = None
    if word == "ratelimit":
        error = "You've hit your usage limit. Upgrade to Pro (https://chatgpt.com/explore/pro)"
        error += f" or try again in {int(float(arg))} seconds." if arg else "."
    elif word == "overloaded":
        error = "exceeded retry limit, last status: 529 Overloaded"
    elif word == "notloggedin":
        error = UNAUTHORIZED
    elif rnd.exit_code:
        error = rnd.answer or "failing"
    if error is not None:
        event({"type": "error", "message": error})
        event({"type": "turn.failed", "error": {"message": error}})
        if not json_mode:
            print(f"ERROR: {error}", file=sys.stderr, flush=True)
        return rnd.exit_code or 1
    item = {"id": "item_1", "type": "agent_message", "text": rnd.answer}
    event({"type": "item.completed", "item": item})
    usage = {"input_tokens": rnd.input_tokens, "cached_input_tokens": rnd.cached_tokens,
             "output_tokens": rnd.output_tokens}  # fmt: skip
    event({"type": "turn.completed", "usage": usage})
    if not json_mode:
        print(rnd.answer, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
