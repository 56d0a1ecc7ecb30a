"""Fixtures for the fault suite: a town on the session Redis, or one with its own server."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.faultkit import TT, FaultTown, make_town
from tinytown.store.server import EmbeddedServer


@pytest.fixture
def ft(tt_env: dict[str, str], redis_url: str, tmp_path: Path) -> Iterator[FaultTown]:
    """A town on the shared session Redis (for faults that do not touch the server)."""
    town = make_town(tmp_path / "town", f"f-{uuid.uuid4().hex[:12]}", tt_env, redis_url)
    try:
        yield town
    finally:
        town.cleanup()


@pytest.fixture
def embedded_ft(
    tt_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultTown]:
    """A town whose `tt` starts its own embedded redis-server in .tt/ (no REDIS_URL), so a
    test may kill or restart that server, or drop its connections, without touching the
    session's. A short directory keeps the socket path under the OS limit for redis-py."""
    env = dict(tt_env)
    env.pop("REDIS_URL", None)
    root = tmp_path_factory.mktemp("e") / "town"
    town = make_town(root, f"e-{uuid.uuid4().hex[:10]}", env, None)
    server = EmbeddedServer(root / ".tt")
    server.start()
    try:
        yield town
    finally:
        town.cleanup()
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run([*TT, "down"], cwd=root, env=env, capture_output=True, timeout=20)
        server.stop()  # in case `tt down` refused (e.g. a corrupt lease left by the test)
