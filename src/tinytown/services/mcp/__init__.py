"""What the town's MCP server (the ``townhall`` front end, docs/mcp.md) needs from the
services: the config files that hand it to agent CLIs (wiring.py), the HTTP token
(token.py), and reading an agent's notes (inbox.py)."""
