"""Tinytown: coordinate AI coding agents through Redis, on a trio actor runtime.

The Python API (all async, run under trio)::

    town = await Town.connect(".")
    handle = await town.spawn_agent("worker-1", "claude", role="worker")
    task_id = await handle.assign(Task.new("Build the API"))

Agents act only while a runtime hosts the town (``tt run`` elsewhere, or
``tinytown.runtime.town_runtime.Runtime(town).serve`` in the same program: the README's
example does that).
"""

from __future__ import annotations

from tinytown.errors import TinytownError as TinytownError

# Not `from typing import TYPE_CHECKING`: typing costs the launcher ~6 ms (mypy knows the name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from tinytown.model import Agent as Agent
    from tinytown.model import AgentState as AgentState
    from tinytown.model import Message as Message
    from tinytown.model import MessageType as MessageType
    from tinytown.model import Priority as Priority
    from tinytown.model import Task as Task
    from tinytown.model import TaskState as TaskState
    from tinytown.services.handle import AgentHandle as AgentHandle
    from tinytown.services.town import Town as Town

__version__ = "0.1.0"


_MODEL = frozenset(
    {"Agent", "AgentState", "Message", "MessageType", "Priority", "Task", "TaskState"}
)


def __getattr__(name: str) -> Any:
    # The API is imported when first used, not with the package: the `tt` program imports
    # this package first, and its launcher (tinytown/launcher.py) needs none of it.
    if name in _MODEL:
        import tinytown.model

        return getattr(tinytown.model, name)
    if name == "Town":
        from tinytown.services.town import Town

        return Town
    if name == "AgentHandle":
        from tinytown.services.handle import AgentHandle

        return AgentHandle
    raise AttributeError(f"module 'tinytown' has no attribute {name!r}")
