"""Shared fixtures: one real redis-server per test session, a unique town per test."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import trio

from tests.fakeclis import install_fake_clis
from tests.gitrepo import git_env, make_repo
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.config import TownConfig
from tinytown.services.town import Town
from tinytown.store.server import EmbeddedServer

REPO = Path(__file__).resolve().parents[1]
SCRIPTED_AGENT = REPO / "actors" / "scripted_agent.py"


@pytest.fixture(scope="session", autouse=True)
def users_registry_untouched() -> Iterator[None]:
    """Fails the session if the user's own ``~/.tt/towns.toml`` changed while it ran."""
    real = Path.home() / ".tt" / "towns.toml"
    before = real.read_bytes() if real.is_file() else None
    yield
    after = real.read_bytes() if real.is_file() else None
    assert after == before, f"the test suite wrote to the user's registry {real}"


@pytest.fixture(autouse=True)
def private_tt_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test (and every process it starts) gets its own TT_HOME, so the suite never
    writes to the user's town registry (``tt_env`` may set another one)."""
    home = tmp_path_factory.mktemp("tt-home")
    monkeypatch.setenv("TT_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A real redis-server for the whole session (the embedded one, on a Unix socket)."""
    server = EmbeddedServer(tmp_path_factory.mktemp("redis") / ".tt")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    return redis_server.url


@pytest.fixture
def tt_env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for `tt` processes: the session Redis, a private TT_HOME."""
    home = tmp_path / "tt-home"
    monkeypatch.setenv("TT_HOME", str(home))
    for name in ("TT_AGENT_ID", "TT_AGENT_NAME", "TT_TASK_ID", "TT_TOWN", "TT_TOWN_DIR"):
        monkeypatch.delenv(name, raising=False)
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # let `tt` processes reuse cached bytecode
    return env


@pytest.fixture
def town_dir(tt_env: dict[str, str], tmp_path: Path) -> Path:
    """A fresh town with a unique name and the scripted agent as CLI preset ``scripted``."""
    root = tmp_path / "town"
    root.mkdir()
    config = TownConfig.create(root, f"t-{uuid.uuid4().hex[:12]}")
    config.data["default_cli"] = "scripted"
    config.data["agent_clis"] = {
        "scripted": {"command": f"{sys.executable} {SCRIPTED_AGENT}"},
    }
    config.data["runtime"].update({"kill_grace": 1.0, "heartbeat_interval": 0.5})
    config.save()
    return root


@pytest.fixture
async def town(town_dir: Path) -> AsyncIterator[Town]:
    town = await Town.connect(town_dir)
    try:
        yield town
    finally:
        await town.aclose()


@pytest.fixture
async def runtime(town: Town) -> AsyncIterator[Runtime]:
    """The town's runtime, served in a nursery for the duration of the test."""
    rt = Runtime(town)
    async with trio.open_nursery() as nursery:
        await nursery.start(rt.serve)
        yield rt
        nursery.cancel_scope.cancel()


StartRuntime = Callable[[], Awaitable[Runtime]]


@pytest.fixture
async def start_runtime(town: Town) -> AsyncIterator[StartRuntime]:
    """Starts the town's runtime when called (once the test has configured the town);
    stopped at the end of the test."""
    async with trio.open_nursery() as nursery:

        async def go() -> Runtime:
            rt = Runtime(town)
            await nursery.start(rt.serve)
            return rt

        yield go
        nursery.cancel_scope.cancel()


@pytest.fixture
def fake_clis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake ``claude``/``codex``/``gemini`` (actors/fake_*.py, tests/fakeclis.py) first
    on PATH for this process and what it starts; each run appends its argv to
    ``calls.jsonl`` beside them (FAKE_CLI_LOG). Returns their directory."""
    bin_dir = tmp_path / "fake-clis"
    install_fake_clis(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_CLI_LOG", str(bin_dir / "calls.jsonl"))
    for name in ("FAKE_CLI_AS_ROOT", "FAKE_CLI_NOT_LOGGED_IN", "IS_SANDBOX"):
        monkeypatch.delenv(name, raising=False)
    return bin_dir


@pytest.fixture
def repo(town_dir: Path, tt_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The town root as a git repository (branch ``main``, one commit), git's identity and
    configuration private to the test (tests/gitrepo.py)."""
    git_env(monkeypatch, town_dir.parent / "git-home", tt_env)
    make_repo(town_dir)
    return town_dir


@pytest.fixture
async def gtown(repo: Path) -> AsyncIterator[Town]:
    """The town of :func:`repo`, connected."""
    town = await Town.connect(repo)
    try:
        yield town
    finally:
        await town.aclose()


TtRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def tt(tt_env: dict[str, str], town_dir: Path) -> TtRunner:
    """Run the real `tt` command line as a subprocess in the town directory."""

    def run(
        *args: str, input: str | None = None, timeout: float = 60, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tinytown", *args],
            cwd=cwd or town_dir,
            env=tt_env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
