"""The town: one project workspace, its config, its Redis, and the services on it.

``Town`` is the facade of the Python API (spec section 8): it opens the town and wires
the services together. The pieces live in their own modules: the agent handle
(handle.py), the town registry (registry.py), ``.gitignore`` editing (gitignore.py),
which Redis to use (endpoint.py) and what agents may do in it (access.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import trio

from tinytown.errors import ConfigError, RedisUnavailableError
from tinytown.model import SpawnMode, now
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services import control
from tinytown.services.access import AgentAccess
from tinytown.services.agents import AgentService
from tinytown.services.backlog import BacklogService
from tinytown.services.config import CONFIG_FILE, TownConfig, find_town_root
from tinytown.services.endpoint import embedded_server, redis_url
from tinytown.services.executables import agent_path
from tinytown.services.gitignore import ignore_tt_dir
from tinytown.services.handle import AgentHandle
from tinytown.services.lifecycle import AgentLifecycle
from tinytown.services.messages import MessageService
from tinytown.services.recovery import RecoveryService
from tinytown.services.registry import default_town_name, register_town
from tinytown.services.tasks import TaskService
from tinytown.store import indexes
from tinytown.store.client import Redis
from tinytown.store.keys import Keys, validate_town_name
from tinytown.store.records import Store

#: Version of the key layout written to ``tt:<town>:meta``.
LAYOUT_VERSION = "1"


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
        self.backlog = BacklogService(self.store, self.agents, self.tasks)
        self.recovery = RecoveryService(self.store, self.agents, self.tasks)
        self.lifecycle = AgentLifecycle(self.store, self.agents, self.tasks, self.recovery)
        self.access = AgentAccess(self.store, url)

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
            config = TownConfig.create(root, validate_town_name(name or default_town_name(root)))
            ignore_tt_dir(root)
        town = await cls.connect(root, search=False)
        await indexes.set_meta(town.store, town.name, now(), LAYOUT_VERSION)
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

        Starts the embedded Redis if it is not running (unless ``start_server`` is false).
        With ``reconnect`` (the runtime), commands ride out Redis outages.
        """
        root = find_town_root(path, search=search)
        config = TownConfig.load(root)
        validate_town_name(config.name)
        url = redis_url(config)
        if url is None:
            server = embedded_server(config)
            if start_server:
                await trio.to_thread.run_sync(server.start)
            url = server.url
        redis = Redis(url, reconnect=reconnect)
        town = cls(config, redis, url)
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
    ) -> AgentHandle:
        """Create an agent (``starting``; a running town starts its actor). The town's
        ``tinytown.toml`` is re-read first if it changed, so a CLI preset added meanwhile
        (``tt config agent_clis.NAME ...``) is known."""
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
        )
        return self.handle(agent.id)

    async def agent(self, ref: str, *, sender: str = SUPERVISOR_ID) -> AgentHandle:
        """A handle on an existing agent, by name, nickname, id or id prefix; ``sender``
        is who acts through it (an agent id, default the supervisor)."""
        return self.handle((await self.agents.resolve(ref)).id, sender=sender)

    def handle(self, agent_id: str, *, sender: str = SUPERVISOR_ID) -> AgentHandle:
        return AgentHandle(
            agent_id,
            agents=self.agents,
            tasks=self.tasks,
            messages=self.messages,
            lifecycle=self.lifecycle,
            sender=sender,
        )

    async def runtime(self) -> control.LeaseHolder | None:
        """Who runs the town now (None when it is not running)."""
        return await control.runtime_holder(self.store)

    def env_for_agents(self) -> dict[str, str]:
        """Environment for agent CLIs, so they can call ``tt`` back (it is put on PATH).

        ``REDIS_URL`` never carries the admin password: it is the town's agent user
        (after :meth:`AgentAccess.prepare`) or the URL without credentials; see
        docs/security.md.
        """
        return {
            "TT_TOWN": self.name,
            "TT_TOWN_DIR": str(self.root),
            "REDIS_URL": self.access.agent_url,
            "PATH": agent_path(),
        }
