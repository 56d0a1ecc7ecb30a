"""The town: one project workspace, its config, its Redis, and the services on it.

``Town`` is the facade of the Python API (spec section 8): it opens the town and wires
the services together. The pieces live in their own modules: the agent handle
(handle.py), the town registry (registry.py), ``.gitignore`` editing (gitignore.py),
which Redis to use (endpoint.py) and what agents may do in it (access.py).
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import attrs
import trio

from tinytown.errors import (
    ConfigError,
    InvalidInputError,
    RedisUnavailableError,
    RuntimeBusyError,
    RuntimeNotRunningError,
    TimeoutExpiredError,
    TinytownError,
)
from tinytown.model import Agent, Budget, Message, SpawnMode, Usage, now
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.model.message import Body
from tinytown.model.usage import KEEP, Keep
from tinytown.services import control
from tinytown.services.agents import AgentService
from tinytown.services.config import CONFIG_FILE, TownConfig, find_town_root
from tinytown.services.endpoint import embedded_server, redis_url
from tinytown.services.messages import BROADCAST_KIND, MessageService, make_body
from tinytown.services.tasks import TaskService
from tinytown.store import indexes
from tinytown.store.client import Redis
from tinytown.store.keys import Keys, validate_town_name
from tinytown.store.oneshot import run_sync
from tinytown.store.records import Store

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tinytown.services.access import AgentAccess
    from tinytown.services.backlog import BacklogService
    from tinytown.services.costs import Budgets, CostReport, CostService, Scope
    from tinytown.services.doctor import Report
    from tinytown.services.handle import AgentHandle
    from tinytown.services.lifecycle import AgentLifecycle
    from tinytown.services.recovery import RecoveryService
    from tinytown.services.workspace.service import WorkspaceService

#: Version of the key layout written to ``tt:<town>:meta``.
LAYOUT_VERSION = "1"


class TownStoppedError(RedisUnavailableError):
    """The town's embedded Redis is not running and the command was not to start it."""

    def __init__(self, town: str, root: Path) -> None:
        super().__init__(
            f"Town {town} is stopped (its Redis is not running; data kept in {root}/.tt)."
        )
        self.town = town


@attrs.frozen
class StopRequest:
    """What the running town said when asked to stop."""

    holder: control.LeaseHolder  # the runtime that was asked
    grace: float  # seconds rounds in progress get (0: cancelled at once)
    rounds: list[str]  # agents whose round was in progress


class Town:
    """A connected town. Use as ``async with await Town.connect(path) as town:``."""

    def __init__(self, config: TownConfig, redis: Redis, url: str) -> None:
        self.config = config
        self.root = config.root
        self.name = config.name
        self.url = url
        self.redis = redis  # for tests and tools that inspect Redis; services use store
        self.keys = Keys(self.name)
        self.store = Store(redis, self.keys)
        self.agents = AgentService(self.store, config)
        self.tasks = TaskService(self.store, self.agents)
        self.messages = MessageService(self.store, self.agents)
        #: Whether opening the town started its embedded Redis (front ends say so).
        self.started_server = False

    # -- the other services, each made (and its module imported) when first used: a
    # one-shot command such as `tt send` pays only for the modules it touches.

    @cached_property
    def spending(self) -> CostService:
        """Costs and budgets (``tt costs``, ``tt budget``, status's totals)."""
        from tinytown.services.costs import CostService

        return CostService(self.store, self.agents, self.tasks, self.config)

    @cached_property
    def backlog(self) -> BacklogService:
        from tinytown.services.backlog import BacklogService

        return BacklogService(self.store, self.agents, self.tasks)

    @cached_property
    def recovery(self) -> RecoveryService:
        from tinytown.services.recovery import RecoveryService

        return RecoveryService(self.store, self.agents, self.tasks)

    @cached_property
    def lifecycle(self) -> AgentLifecycle:
        from tinytown.services.lifecycle import AgentLifecycle

        return AgentLifecycle(self.store, self.agents, self.tasks, self.recovery)

    @cached_property
    def access(self) -> AgentAccess:
        from tinytown.services.access import AgentAccess

        return AgentAccess(self.store, self.url)

    @cached_property
    def workspaces(self) -> WorkspaceService:  # issue 12
        from tinytown.services.workspace.service import WorkspaceService

        return WorkspaceService(self.store, self.config, self.agents)

    # -- opening ---------------------------------------------------------------------

    @classmethod
    async def init(cls, path: str | os.PathLike[str] = ".", name: str | None = None) -> Town:
        """Create ``tinytown.toml`` (and ``.tt/``) in ``path`` and connect.

        An existing town is connected as is; asking for a different name is an error.
        """
        root = Path(path).resolve()
        if (root / CONFIG_FILE).exists():
            config = TownConfig.load(root)
            if name and name != config.name:
                raise ConfigError(f"{root} is already town {config.name!r}.")
        else:
            root.mkdir(parents=True, exist_ok=True)
            from tinytown.services.gitignore import ignore_tt_dir
            from tinytown.services.registry import default_town_name

            config = TownConfig.create(root, validate_town_name(name or default_town_name(root)))
            ignore_tt_dir(root)
        town = await cls.connect(root, search=False)
        await indexes.set_meta(town.store, town.name, now(), LAYOUT_VERSION)
        from tinytown.services.registry import register_town

        register_town(root, town.name)
        return town

    @classmethod
    async def connect(
        cls,
        path: str | os.PathLike[str] = ".",
        *,
        search: bool = True,
        start_server: bool = True,
        reconnect: bool = False,
    ) -> Town:
        """Open the town at ``path`` (or the nearest ancestor with ``tinytown.toml``).

        Starts the embedded Redis if it is not running (``started_server`` then says so);
        with ``start_server`` false a stopped one raises TownStoppedError instead (read-only
        commands: they report a stopped town rather than start it).
        With ``reconnect`` (the runtime), commands ride out Redis outages.
        """
        root = find_town_root(path, search=search)
        config = TownConfig.load(root)
        validate_town_name(config.name)
        url = redis_url(config)
        started = False
        if url is None:
            server = embedded_server(config)
            if start_server:
                started = await run_sync(server.start)
            elif not await run_sync(server.is_running):
                raise TownStoppedError(config.name, root)
            url = server.url
        redis = Redis(url, reconnect=reconnect)
        town = cls(config, redis, url)
        town.started_server = started
        if not reconnect:
            try:
                await indexes.ping(town.store)
            except RedisUnavailableError:
                await redis.aclose()
                raise
        return town

    async def aclose(self) -> None:
        await self.store.aclose()

    async def __aenter__(self) -> Town:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the API of spec section 8 ---------------------------------------------------

    async def spawn_agent(
        self,
        name: str,
        cli: str | None = None,
        *,
        role: str | None = None,
        nickname: str | None = None,
        parent: str | None = None,
        mode: SpawnMode | str = SpawnMode.FRESH,
        max_rounds: int | None = None,
        scope: str | None = None,
        budget: Budget | None = None,
        session_id: str | None = None,
        worktree: bool | None = None,
    ) -> AgentHandle:
        """Create an agent (``starting``; a running town starts its actor). The town's
        ``tinytown.toml`` is re-read first if it changed, so a CLI preset added meanwhile
        (``tt config agent_clis.NAME ...``) is known.

        ``budget``: its own spending limit (``Budget(usd=5)``, ``Budget(tokens=200_000)``),
        besides the town's ``[budget]``. ``session_id``: a CLI session to continue; the
        agent is then ``resumed``. Cancellable: once the write was sent, a cancelled call
        may or may not have registered the agent."""
        self.config.refresh()
        agent = await self.agents.spawn(
            name,
            cli,
            role=role,
            nickname=nickname,
            parent=parent,
            mode=mode,
            max_rounds=max_rounds,
            scope=scope,
            budget=budget,
            session_id=session_id,
            worktree=worktree,  # its own git worktree; None: [workspace] mode
        )
        return self.handle(agent.id)

    async def broadcast(
        self, body: Body | str, *, urgent: bool = False, sender: str | None = None
    ) -> tuple[Message, int]:
        """One message into every live agent's inbox, all or none; returns the message and
        how many agents it reached. Text is a note (``informational``): it starts no round
        and costs nothing by itself, riding along with each agent's next round; pass a
        ``TaskBody`` for work (one round per agent). Cancellable: once sent, a cancelled
        broadcast may or may not have been delivered (to all or to none)."""
        if isinstance(body, str):
            body = make_body(BROADCAST_KIND, body)
        return await self.messages.broadcast(body, urgent=urgent, sender=sender)

    # -- costs and budgets -------------------------------------------------------------

    async def costs(self, by: str = "agent") -> CostReport:
        """What the town's rounds cost, per agent (``by="agent"``) or per task
        (``by="task"``): rows of :class:`~tinytown.model.Usage`, their total and the town's
        running total. Cancellable (reads only)."""
        return await self.spending.costs(by)

    async def usage(self) -> Usage:
        """The town's running total (tokens, dollars, rounds). Cancellable (reads only)."""
        return await self.spending.town_usage()

    async def budgets(self) -> Budgets:
        """The town's limits (town, each agent, each task, the agents' own) and what it
        spent. Cancellable (reads only)."""
        return await self.spending.budgets()

    async def doctor(
        self,
        agents: Sequence[str] | None = None,
        *,
        timeout: float | None = None,
        euid: int | None = None,
    ) -> Report:
        """Can the agents work? ``tt doctor``'s free checks (services/doctor/): each CLI the
        ``agents`` use (names or ids; default every agent not stopped, cold or in error,
        else ``default_cli``): installed, logged in, its options accepted for ``euid`` (who
        runs the rounds; default this process's user), its MCP server reached; and the town
        (Redis, the runtime). ``timeout``: seconds per probe (default the doctor's). Raises
        NotFoundError for an unknown agent. Cancellation: propagates, after every probe
        started was killed and reaped."""
        from tinytown.services.doctor import diagnose  # only when asked (its probes)
        from tinytown.services.doctor.probe import PROBE_TIMEOUT

        wait = PROBE_TIMEOUT if timeout is None else timeout
        return await diagnose(self, agents or (), timeout=wait, euid=euid)

    async def set_budget(
        self,
        agent: str | None = None,
        *,
        usd: float | Keep | None = KEEP,
        tokens: int | Keep | None = KEEP,
        scope: Scope = "agent",
    ) -> Agent | Budget | None:
        """Set a spending limit; ``None`` removes a limit, an omitted one stays.

        With ``agent`` (a name or id): that agent's own budget, one atomic record update;
        returns the agent. Without: the ``[budget]`` default of tinytown.toml for
        ``scope`` (``"agent"``: each agent, ``"task"``: each task, ``"town"``: the whole
        town), the file's comments kept; returns the new limit. Raising a limit never
        resumes an agent the runtime paused for spending: call ``resume`` on its handle.
        Raises InvalidInputError, NotFoundError, ConfigError; nothing changes then.
        Cancellable: once the write was sent, a cancelled call may or may not have
        happened."""
        if agent is not None:
            if scope != "agent":
                raise InvalidInputError("A budget is for one agent, or for a scope; not both.")
            return await self.spending.set_agent_budget(agent, usd=usd, tokens=tokens)
        return await self.spending.set_default_budget(scope, usd=usd, tokens=tokens)

    async def agent(self, ref: str, *, sender: str = SUPERVISOR_ID) -> AgentHandle:
        """A handle on an existing agent, by name, nickname, id or id prefix; ``sender``
        is who acts through it (an agent id, default the supervisor)."""
        return self.handle((await self.agents.resolve(ref)).id, sender=sender)

    def handle(self, agent_id: str, *, sender: str = SUPERVISOR_ID) -> AgentHandle:
        from tinytown.services.handle import AgentHandle

        return AgentHandle(
            agent_id,
            agents=self.agents,
            tasks=self.tasks,
            messages=self.messages,
            lifecycle=self.lifecycle,
            costs=self.spending,
            sender=sender,
        )

    async def runtime(self) -> control.LeaseHolder | None:
        """Who runs the town now (None when it is not running)."""
        return await control.runtime_holder(self.store)

    async def request_stop(
        self, *, now: bool = False, timeout: float = control.REPLY_TIMEOUT
    ) -> StopRequest | None:
        """Ask the running town (on this host or another) to shut down, as SIGTERM would:
        rounds in progress get ``runtime.shutdown_grace`` seconds, or with ``now`` are
        cancelled at once (as a second signal). Returns what it said, or None when no
        runtime holds the town. Does not wait for the town to stop
        (:meth:`wait_stopped`). Raises RuntimeBusyError for an unreadable lease. Cancellable:
        the request may still be carried out."""
        holder = await control.runtime_holder(self.store)
        if holder is None:
            return None
        if holder.corrupt:
            raise RuntimeBusyError(f"Town {self.name} has {holder.describe()}.")
        try:
            reply = await control.request(self.store, "shutdown", timeout, now=now)
        except RuntimeNotRunningError:
            return StopRequest(holder, 0.0, [])  # it stopped before it could answer
        if not reply.get("ok"):
            raise TinytownError(str(reply.get("error") or "The town refused to stop."))
        rounds = [str(name) for name in reply.get("rounds") or []]
        return StopRequest(holder, float(reply.get("grace") or 0.0), rounds)

    async def wait_stopped(self, holder: control.LeaseHolder, timeout: float) -> None:
        """Return once the runtime ``holder`` no longer holds the town (its lease released
        or expired). Blocks on the event stream (a stopping runtime says so there), never
        polls. Raises TimeoutExpiredError after ``timeout`` seconds. Cancellable."""
        with trio.move_on_after(timeout):
            async with self.store.events.waiter() as wait_event:
                last = await self.store.events.last_id()
                while True:
                    current = await control.runtime_holder(self.store)
                    if current is None or current.id != holder.id:
                        return
                    # The short block also notices a lease that expired without an event.
                    last = await wait_event(last, 1000)
        raise TimeoutExpiredError(
            f"Town {self.name} is still running after {timeout:g} s ({holder.describe()});"
            " 'tt stop --now' cancels its rounds at once."
        )

    def env_for_agents(self) -> dict[str, str]:
        """Environment for agent CLIs, so they can call ``tt`` back (it is put on PATH).

        ``REDIS_URL`` never carries the admin password: it is the town's agent user
        (after :meth:`AgentAccess.prepare`) or the URL without credentials; see
        docs/security.md.
        """
        from tinytown.services.executables import agent_path

        return {
            "TT_TOWN": self.name,
            "TT_TOWN_DIR": str(self.root),
            "REDIS_URL": self.access.agent_url,
            "PATH": agent_path(),
        }
