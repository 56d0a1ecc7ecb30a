"""Command modules of ``tt``: each has ``register(sub)`` and async ``cmd_*`` handlers."""
