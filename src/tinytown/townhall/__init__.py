"""The town's MCP server (``tt mcp``), named after the Rust Tinytown's "townhall".

Agents and people's AI clients use the town through MCP tools instead of parsing ``tt``'s
output: server.py builds the server for one identity (caller.py), agent_tools.py and
supervisor_tools.py hold the tools, resources.py the resources, http.py the streamable
HTTP transport under trio. It sits beside ``cli/`` (which imports it lazily, only for
``tt mcp``, so other commands do not pay for the SDK's import).
"""
