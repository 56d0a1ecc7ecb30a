"""Every Redis key of a town, built in one place (see docs/redis-layout.md)."""

from __future__ import annotations

import re

from tinytown.errors import InvalidNameError

# No ':' (namespace separator), no glob characters, no whitespace: a town name can never
# reach another town's keys or act as a pattern.
TOWN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


#: Kinds of the old global layout (``tt:<kind>:<id>``): a town with one of these names
#: would see the old keys under its own prefix.
RESERVED_TOWN_NAMES = frozenset(
    {
        "agent",
        "task",
        "inbox",
        "urgent",
        "backlog",
        "activity",
        "stop",
        "events",
        "broadcast",
        "mission",
    }
)


def validate_town_name(name: str) -> str:
    if name in RESERVED_TOWN_NAMES:
        raise InvalidNameError(
            f"Town name {name!r} is reserved (the old global key layout uses it)."
        )
    if not TOWN_NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"Town name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit."
        )
    return name


class Keys:
    """Key names under ``tt:<town>:``."""

    def __init__(self, town: str) -> None:
        self.town = validate_town_name(town)
        self.prefix = f"tt:{town}:"

    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def agent(self, agent_id: str) -> str:
        return f"{self.prefix}agent:{agent_id}"

    def inbox(self, agent_id: str) -> str:
        return f"{self.prefix}inbox:{agent_id}"

    def inflight(self, agent_id: str) -> str:
        """Messages taken from the inbox and not yet acknowledged."""
        return f"{self.prefix}inflight:{agent_id}"

    @property
    def agents(self) -> str:
        """Hash: agent name -> agent id (the name index; names are unique)."""
        return f"{self.prefix}agents"

    @property
    def nicknames(self) -> str:
        """Hash: lower-case nickname -> agent id (nicknames are unique in a town)."""
        return f"{self.prefix}nicknames"

    @property
    def answered(self) -> str:
        """Sorted set: ids of questions to the supervisor that were replied to (by time)."""
        return f"{self.prefix}answered"

    @property
    def tasks(self) -> str:
        """Sorted set: task id scored by creation time (the task index)."""
        return f"{self.prefix}tasks"

    @property
    def plan_ids(self) -> str:
        """Hash: tasks.toml plan id -> task id (makes ``sync push`` idempotent)."""
        return f"{self.prefix}plan_ids"

    @property
    def backlog(self) -> str:
        """List of task ids waiting for an agent."""
        return f"{self.prefix}backlog"

    @property
    def events(self) -> str:
        """Capped stream of everything that happens in the town."""
        return f"{self.prefix}events"

    @property
    def mail(self) -> str:
        """Capped list of messages the supervisor received (newest last)."""
        return f"{self.prefix}mail"

    @property
    def runtime(self) -> str:
        """The runtime lease: who runs the town, with an expiry."""
        return f"{self.prefix}runtime"

    @property
    def control(self) -> str:
        """List of control requests for the runtime."""
        return f"{self.prefix}control"

    def reply(self, request_id: str) -> str:
        return f"{self.prefix}reply:{request_id}"

    @property
    def wake(self) -> str:
        """Pub/sub channel: an agent id (or ``control``) whose inbox has news."""
        return f"{self.prefix}wake"

    @property
    def merges(self) -> str:
        """List of merge requests (JSON) waiting for the runtime's merge queue."""
        return f"{self.prefix}merges"

    @property
    def merges_claimed(self) -> str:
        """List holding the merge request being worked on (at most one)."""
        return f"{self.prefix}merges:claimed"

    @property
    def meta(self) -> str:
        """Hash of town metadata (name, created_at, layout version)."""
        return f"{self.prefix}meta"

    @property
    def usage(self) -> str:
        """Hash: the town's running usage totals (``input_tokens``, ``output_tokens``,
        ``cached_tokens``, ``cost_usd``, ``rounds``, ``duration``), added to by each round
        in the step that acknowledges it."""
        return f"{self.prefix}usage"

    @property
    def pattern(self) -> str:
        """SCAN pattern for every key of this town (the name has no glob characters)."""
        return f"{self.prefix}*"
