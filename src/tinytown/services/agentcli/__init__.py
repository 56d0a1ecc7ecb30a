"""Agent CLIs as they are: presets, how each reports a round, and how a round failed."""
