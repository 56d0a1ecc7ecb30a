"""Services shared by the CLI, the REPL, the runtime and the Python API."""
