"""The town: one project workspace, its config, its Redis, and the services on it."""

from __future__ import annotations

import os
import subprocess
import sysconfig
import tomllib
from pathlib import Path
from types import TracebackType
from typing import Any

import tomli_w
import trio

from tinytown.errors import ConfigError, NotInitializedError, RedisUnavailableError
from tinytown.model import Agent, SpawnMode, now
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services import control
from tinytown.services.agents import AgentService
from tinytown.services.backlog import BacklogService
from tinytown.services.config import CONFIG_FILE, TownConfig, find_town_root
from tinytown.services.messages import MessageService
from tinytown.services.tasks import TaskService
from tinytown.store.client import Redis
from tinytown.store.keys import Keys, validate_town_name
from tinytown.store.records import Store
from tinytown.store.server import EmbeddedServer


def tt_home() -> Path:
    """Per-user Tinytown directory (``TT_HOME`` or ``~/.tt``): the town registry lives here."""
    return Path(os.environ.get("TT_HOME") or Path.home() / ".tt")


def default_town_name(root: Path) -> str:
    """The directory name, made into a legal town name."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in root.name).strip("-._")
    return cleaned[:64] or "town"


class Town:
    """A connected town. Use as ``async with await Town.connect(path) as town:``."""

    def __init__(self, config: TownConfig, redis: Redis, url: str) -> None:
        self.config = config
        self.root = config.root
        self.name = config.name
        self.url = url
        self.redis = redis
        self.keys = Keys(self.name)
        self.store = Store(redis, self.keys)
        self.agents = AgentService(self.store, config)
        self.tasks = TaskService(self.store, self.agents)
        self.messages = MessageService(self.store, self.agents)
        self.backlog = BacklogService(self.store, self.agents, self.tasks)

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
            _ignore_tt_dir(root)
        town = await cls.connect(root, search=False)
        await town.redis.execute("HSETNX", town.keys.meta, "created_at", now())
        await town.redis.execute("HSET", town.keys.meta, "name", town.name, "layout", "1")
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
                await redis.execute("PING")
            except RedisUnavailableError:
                await redis.aclose()
                raise
        return town

    async def aclose(self) -> None:
        await self.redis.aclose()

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
        return AgentHandle(self, agent.id)

    async def agent(self, ref: str) -> AgentHandle:
        """A handle on an existing agent, by name, nickname, id or id prefix."""
        return AgentHandle(self, (await self.agents.resolve(ref)).id)

    async def runtime(self) -> control.LeaseHolder | None:
        """Who runs the town now (None when it is not running)."""
        return await control.runtime_holder(self.store)

    def env_for_agents(self) -> dict[str, str]:
        """Environment for agent CLIs, so they can call ``tt`` back (it is put on PATH)."""
        scripts = sysconfig.get_path("scripts")
        path = os.environ.get("PATH", os.defpath)
        if scripts and scripts not in path.split(os.pathsep):
            path = scripts + os.pathsep + path
        return {
            "TT_TOWN": self.name,
            "TT_TOWN_DIR": str(self.root),
            "REDIS_URL": self.url,
            "PATH": path,
        }


def redis_url(config: TownConfig) -> str | None:
    """An external server's URL (``REDIS_URL`` or ``[redis] url``), else None (embedded)."""
    return os.environ.get("REDIS_URL") or (config.data.get("redis") or {}).get("url") or None


def embedded_server(config: TownConfig) -> EmbeddedServer:
    binary = (config.data.get("redis") or {}).get("server") or None
    return EmbeddedServer(config.root / ".tt", binary)


def _ignore_tt_dir(root: Path) -> None:
    """Add ``.tt/`` to the repository's .gitignore when the town is in a git work tree."""
    inside = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if inside.returncode != 0:
        return
    ignore = root / ".gitignore"
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    if not {".tt", ".tt/", "/.tt", "/.tt/"} & set(lines):
        with ignore.open("a") as fh:
            fh.write(("\n" if lines and lines[-1] else "") + ".tt/\n")


def register_town(root: Path, name: str) -> None:
    """Remember the town in ``~/.tt/towns.toml`` for ``tt towns``."""
    home = tt_home()
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        towns = registered_towns()
        towns[str(root)] = name
        body = {"towns": [{"path": p, "name": n} for p, n in sorted(towns.items())]}
        tmp = home / "towns.toml.tmp"
        tmp.write_text(tomli_w.dumps(body))
        tmp.replace(home / "towns.toml")
    except OSError:
        pass  # the registry is a convenience; a read-only home must not break init


def registered_towns() -> dict[str, str]:
    try:
        data = tomllib.loads((tt_home() / "towns.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return {
        str(t.get("path")): str(t.get("name"))
        for t in data.get("towns", [])
        if isinstance(t, dict) and t.get("path")
    }


class AgentHandle:
    """The API's grip on one agent (spec section 8)."""

    def __init__(self, town: Town, agent_id: str) -> None:
        self.town = town
        self.id = agent_id

    async def assign(self, task: Any) -> str:
        """Assign a :class:`~tinytown.model.Task` (or a description); returns the task id."""
        description = task if isinstance(task, str) else task.description
        tags = () if isinstance(task, str) else task.tags
        created = await self.town.tasks.assign(self.id, description, tags=tags)
        return created.id

    async def send(self, body: Any, *, urgent: bool = False) -> str:
        """Send a message body, a :class:`MessageType` without fields, or text (a task)."""
        from tinytown.model import MessageType
        from tinytown.model.message import BODY_CLASSES, TaskBody

        if isinstance(body, MessageType):
            body = BODY_CLASSES[body]()
        elif isinstance(body, str):
            body = TaskBody(body)
        message = await self.town.messages.send(self.id, body, urgent=urgent)
        return message.id

    async def inbox_len(self) -> int:
        return await self.town.agents.inbox_len(self.id)

    async def state(self) -> Agent:
        return await self.town.agents.get(self.id)

    async def interrupt(self) -> Agent:
        return (await self.town.agents.interrupt(self.id)).agent

    async def resume(self) -> Agent:
        return (await self.town.agents.resume(self.id)).agent

    async def close(self) -> Agent:
        return (await self.town.agents.close(self.id)).agent

    async def kill(self) -> Agent:
        return (await self.town.agents.kill(self.id)).agent

    async def restart(self) -> Agent:
        return (await self.town.agents.restart(self.id)).agent

    async def wait(self, timeout: float | None = None, *, idle: bool = False) -> Agent:
        """Block until terminal (or idle with an empty inbox). Cancellable."""
        return await self.town.agents.wait(self.id, timeout=timeout, idle=idle)


_ = (NotInitializedError, SUPERVISOR_ID)
