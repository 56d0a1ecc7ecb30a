"""The ``tt`` command line: one argparse parser (shared with the REPL) over the services."""
