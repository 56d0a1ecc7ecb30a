"""What a command handler gets: the connected town (if any), the output, the --json flag."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path

import attrs

from tinytown import townroot
from tinytown.cli.interactive import Interactive
from tinytown.cli.output import Output, name_for
from tinytown.errors import NotFoundError, NotInitializedError, TinytownError
from tinytown.model.ids import SUPERVISOR_ID, is_uuid
from tinytown.services import legacy
from tinytown.services.config import find_town_root
from tinytown.services.town import Town
from tinytown.store import indexes


class UsageError(TinytownError):
    """A command line that parses but does not make sense (exit 2, like argparse's errors)."""

    exit_code = 2


def locate_root(town_dir: str | None) -> Path:
    """The town's root: ``-t DIR`` (or an ancestor), else the nearest ancestor of the current
    directory with ``tinytown.toml``, else ``TT_TOWN_DIR`` (set for agents' CLIs); the rule
    is :func:`tinytown.townroot.locate` (the launcher's too)."""
    found = townroot.locate(town_dir, os.environ)
    if found is None:  # the error names where the search started
        return find_town_root(town_dir or ".")
    return Path(found)


def agent_from_env() -> str | None:
    """The agent whose round runs this process (``TT_AGENT_ID``, set by the runtime for
    an agent's CLI), or None. The front end reads it; services get it as a parameter."""
    agent_id = os.environ.get("TT_AGENT_ID", "").strip().lower()
    return agent_id if is_uuid(agent_id) else legacy.agent_id_from_env()  # Rust's variable


#: Handlers of the commands that only read the town. After ``tt down`` they report the
#: town stopped instead of starting its embedded Redis again; every other command starts
#: it (and says so). A command can also declare itself: ``set_defaults(readonly=True)``;
#: any ``--dry-run`` reads only.
READ_ONLY_HANDLERS = frozenset(
    {
        "cmd_status",
        "cmd_list",
        "cmd_wait",
        "cmd_tasks",
        "cmd_task_show",
        "cmd_task_current",
        "cmd_backlog_list",
        "cmd_inbox",
        "cmd_events",
        "cmd_history",
    }
)


def is_read_only(args: argparse.Namespace) -> bool:
    """Whether the command parsed into ``args`` only reads the town."""
    declared = getattr(args, "readonly", None)
    if declared is not None:
        return bool(declared)
    if getattr(args, "dry_run", False):
        return True
    return getattr(getattr(args, "handler", None), "__name__", "") in READ_ONLY_HANDLERS


async def connect_town(town_dir: str | None, *, start_server: bool = True) -> Town:
    """Open the town (``-t DIR`` or found from here). ``start_server``: start its embedded
    Redis if it is stopped; without, a stopped one raises TownStoppedError."""
    return await Town.connect(locate_root(town_dir), search=False, start_server=start_server)


@attrs.define
class Context:
    """Handed to every ``cmd_*`` handler.

    ``town`` is connected according to the command's ``town`` default (``required``,
    ``optional`` or ``none``); ``town_dir`` is the ``-t/--town`` option as given.
    """

    out: Output = attrs.field(factory=Output)
    town: Town | None = None
    json: bool = False
    town_dir: str | None = None
    interactive: Interactive | None = None  # the REPL, when the program has one
    #: Who acts: the agent running this command (TT_AGENT_ID), else None (the supervisor).
    agent_id: str | None = attrs.field(factory=agent_from_env)
    _names: dict[str, str] | None = None

    @property
    def sender(self) -> str:
        """The id services record as the actor (an agent's, or the supervisor's)."""
        return self.agent_id or SUPERVISOR_ID

    async def connect(self, args: argparse.Namespace) -> Town:
        """Open the town for the command parsed into ``args``: a read-only command never
        starts a stopped embedded Redis (TownStoppedError: "Town X is stopped ..."), any
        other starts it and says so in one line on stderr. Cancellable."""
        town = await connect_town(self.town_dir, start_server=not is_read_only(args))
        shown = is_read_only(args) and not getattr(args, "dry_run", False)  # not a preview
        town.agents.show_legacy = town.tasks.show_legacy = shown  # Rust hash records
        self.agent_id = self.agent_id or await legacy.agent_id_from_name(town.agents)
        if town.started_server:
            print(f"Started the town's Redis ({town.url}).", file=self.out.stderr, flush=True)
        return town

    def need_town(self) -> Town:
        if self.town is None:
            raise NotInitializedError("This command needs a town; run 'tt init' first.")
        return self.town

    def root(self) -> Path:
        """The town root, without connecting to Redis."""
        return self.town.root if self.town is not None else locate_root(self.town_dir)

    async def names(self, *, refresh: bool = False) -> dict[str, str]:
        """Agent id -> name for every agent (and the supervisor), read once per command."""
        if self._names is None or refresh:
            agents = await self.need_town().agents.list()
            self._names = {a.id: a.name for a in agents}
            self._names[SUPERVISOR_ID] = "supervisor"
        return self._names

    async def name_of(self, agent_id: str | None) -> str:
        return name_for(agent_id, await self.names())

    async def name_of_one(self, agent_id: str | None) -> str:
        """The name of one agent, reading only its record (not every agent's, as
        :meth:`names` does for commands that show many): ``tt send`` in a town of
        10,000 agents reads one record to say whom it sent to."""
        if self._names is not None or not agent_id or agent_id == SUPERVISOR_ID:
            return await self.name_of(agent_id)
        try:
            agent = await self.need_town().agents.get(agent_id)
        except NotFoundError:  # removed meanwhile: its short id, as name_for says it
            return name_for(agent_id, {})
        return agent.name

    async def inbox_counts(self, agent_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """Agent id -> (queued, in flight) message counts, in one round trip."""
        return await indexes.queue_counts(self.need_town().store, agent_ids)
