"""Recorded outputs of the real CLIs (shared/reference/agent-clis.md, observed without a
login or network) and documented success shapes, verbatim."""

from __future__ import annotations

CLAUDE_NOT_LOGGED_IN = (
    '{"type":"result","subtype":"success","is_error":true,"api_error_status":null,'
    '"duration_ms":111,"num_turns":1,"result":"Not logged in · Please run /login",'
    '"stop_reason":"stop_sequence","session_id":"4c4b1e2a-8d51-4a0e-9a43-1f4f2d7b6c11",'
    '"total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,'
    '"cache_read_input_tokens":0,"output_tokens":0,"server_tool_use":{"web_search_requests":0}},'
    '"modelUsage":{},"permission_denials":[],"terminal_reason":"completed",'
    '"uuid":"0b7f9a55-5d0c-4c36-9d7a-6f1b2f0c3e99"}\n'
)
CLAUDE_NOT_LOGGED_IN_TEXT = "Not logged in · Please run /login\n"
CLAUDE_ROOT = (
    "--dangerously-skip-permissions cannot be used with root/sudo privileges for security"
    " reasons\n"
)
CLAUDE_OK = (
    '{"type":"result","subtype":"success","is_error":false,"duration_ms":5120,'
    '"num_turns":3,"result":"Added the endpoint and its tests.","session_id":"s-1",'
    '"total_cost_usd":0.0421,"usage":{"input_tokens":12,"cache_creation_input_tokens":2000,'
    '"cache_read_input_tokens":15000,"output_tokens":480},"future_field":{"x":1}}\n'
)
CODEX_NO_NETWORK = """\
{"type":"thread.started","thread_id":"01a22a78-0dd2-7371-9fe8-129b72d84c2f"}
{"type":"turn.started"}
{"type":"error","message":"Reconnecting... 2/5 (stream disconnected before completion: failed to lookup address information: Name does not resolve)"}
{"type":"error","message":"Reconnecting... 3/5 (stream disconnected before completion: failed to lookup address information: Name does not resolve)"}
{"type":"error","message":"Reconnecting... 4/5 (stream disconnected before completion: failed to lookup address information: Name does not resolve)"}
{"type":"error","message":"Reconnecting... 5/5 (stream disconnected before completion: failed to lookup address information: Name does not resolve)"}
{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Falling back from WebSockets to HTTPS transport. stream disconnected before completion: failed to lookup address information: Name does not resolve"}}
{"type":"error","message":"Reconnecting... waiting for network (Connection failed: error sending request)"}
{"type":"error","message":"Reconnecting... waiting for network (Connection failed: error sending request)"}
"""  # noqa: E501
CODEX_WAITING = (
    '{"type":"error","message":"Reconnecting... waiting for network'
    ' (Connection failed: error sending request)"}'
)
CODEX_OK = """\
{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}
{"type":"turn.started"}
{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Looking**"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"ls","aggregated_output":"a\\n","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"Looking at the files first."}}
{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"Fixed the bug in a.py."}}
{"type":"turn.completed","usage":{"input_tokens":24763,"cached_input_tokens":24448,"output_tokens":122}}
"""  # noqa: E501
CODEX_SKIP_GIT = "Not inside a trusted directory and --skip-git-repo-check was not specified.\n"
CODEX_BAD_ARG = (
    "error: unexpected argument '--bogus' found\n\n"
    "  tip: to pass '--bogus' as a value, use '-- --bogus'\n\n"
    "Usage: codex exec [OPTIONS] [PROMPT]\n"
)
GEMINI_NO_AUTH = (
    '{"session_id":"7d0e4a8c-2f5b-4b7e-9c1d-3e2f1a0b9c8d","error":{"type":"Error",'
    '"message":"Please set an Auth method in your ~/.gemini/settings.json or specify one of'
    " the following environment variables before running: GEMINI_API_KEY,"
    ' GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_GCA","code":41}}\n'
)
GEMINI_OK = """{
  "session_id": "g-1",
  "response": "The capital of France is Paris.",
  "stats": {
    "models": {
      "gemini-2.5-pro": {
        "api": {"totalRequests": 2, "totalErrors": 0, "totalLatencyMs": 5053},
        "tokens": {"prompt": 24939, "candidates": 20, "total": 25113, "cached": 21263,
                   "thoughts": 154, "tool": 0}
      },
      "gemini-2.5-flash": {"tokens": {"prompt": 100, "candidates": 5, "cached": 0}}
    },
    "tools": {"totalCalls": 1}
  }
}
"""
