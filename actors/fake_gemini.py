#!/usr/bin/env python3
"""A fake ``gemini`` (gemini-cli) for tests, driven by the scripted agent's directives.

    gemini [-p PROMPT] [-o|--output-format text|json] [--approval-mode MODE] [-y]
           [--session-id UUID] [-r latest|N] [-m MODEL]       prompt on stdin without -p
    gemini --version

``--output-format json`` prints one object: ``session_id``, ``response`` and ``stats``
(per-model token counts), or ``error`` {type, message, code} on failure. The shared
directives are in actors/fakecli.py (``notloggedin`` is gemini's "set an Auth method",
code 41, exit 41); its own:

    noauth      the same as notloggedin (the recorded output without an auth method)

Environment: ``FAKE_CLI_NOT_LOGGED_IN=1`` fails every round as without an auth method;
``FAKE_CLI_LOG`` (see fakecli.py).
"""

from __future__ import annotations

import os
import sys

import fakecli

VERSION = "0.61.0"
NO_AUTH = (
    "Please set an Auth method in your ~/.gemini/settings.json or specify one of the"
    " following environment variables before running: GEMINI_API_KEY,"
    " GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_GCA"
)
VALUED = {"-p", "--prompt", "-o", "--output-format", "--approval-mode", "--session-id",
          "-r", "--resume", "-m", "--model"}  # fmt: skip
FLAGS = {"-y", "--yolo", "--skip-trust", "-d", "--debug"}


def main() -> int:
    fakecli.log_run("gemini")
    argv = sys.argv[1:]
    if argv[:1] in (["--version"], ["-v"]):
        print(VERSION)
        return 0
    options: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in VALUED and i + 1 < len(argv):
            i += 1
            short = {"-p": "--prompt", "-o": "--output-format", "-r": "--resume", "-m": "--model"}
            options[short.get(arg, arg)] = argv[i]
        elif arg not in FLAGS:
            fakecli.usage_error(f"Unknown argument: {arg.lstrip('-')}", 42)
        i += 1
    fmt = options.get("--output-format", "text")
    if fmt not in ("text", "json"):
        fakecli.usage_error(f"Invalid values:\n  Argument: output-format, Given: \"{fmt}\"", 42)
    prompt = options.get("--prompt") or fakecli.read_prompt()
    session = options.get("--session-id") or fakecli.new_session()
    rnd = fakecli.run(prompt, session, "--resume" in options, stops=("noauth",))
    if os.environ.get("FAKE_CLI_NOT_LOGGED_IN") == "1":
        rnd.failure = ("notloggedin", "")
    word, arg = rnd.failure or ("", "")
    error = None
    code = 1
    if word in ("noauth", "notloggedin"):
        error, code = {"type": "Error", "message": NO_AUTH, "code": 41}, 41
    elif word == "ratelimit":
        wait = f" Please retry in {float(arg)}s." if arg else ""
        message = f"[API Error: You exceeded your current quota.{wait}] RESOURCE_EXHAUSTED"
        error = {"type": "Error", "message": message, "code": 429}
    elif word == "overloaded":
        message = "[API Error: The model is overloaded. Please try again later.] UNAVAILABLE"
        error = {"type": "Error", "message": message, "code": 503}
    elif rnd.exit_code:
        error = {"type": "Error", "message": rnd.answer or "failing", "code": 1}
        code = rnd.exit_code
    if error is not None:
        if fmt == "json":
            fakecli.emit({"session_id": session, "error": error})
        else:
            print(error["message"], file=sys.stderr, flush=True)
        return code
    tokens = {"prompt": rnd.input_tokens, "candidates": rnd.output_tokens,
              "total": rnd.input_tokens + rnd.output_tokens, "cached": rnd.cached_tokens,
              "thoughts": 0, "tool": 0}  # fmt: skip
    api = {"totalRequests": 1, "totalErrors": 0, "totalLatencyMs": 1}
    model = options.get("--model", "gemini-2.5-pro")
    if fmt == "json":
        stats = {"models": {model: {"api": api, "tokens": tokens}}}
        fakecli.emit({"session_id": session, "response": rnd.answer, "stats": stats})
    else:
        print(rnd.answer, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
