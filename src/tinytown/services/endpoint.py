"""Which Redis a town uses: an external server (``REDIS_URL`` or ``[redis] url``) or its
embedded one, reached through the 0700 Unix socket in ``.tt/``."""

from __future__ import annotations

import os

from tinytown.services import legacy
from tinytown.services.config import TownConfig
from tinytown.store.server import EmbeddedServer


def redis_url(config: TownConfig) -> str | None:
    """An external server's URL (``REDIS_URL`` or ``[redis] url``), else None (embedded)."""
    url = os.environ.get("REDIS_URL") or (config.data.get("redis") or {}).get("url") or None
    return legacy.url_with_password(url)  # Rust's TINYTOWN_REDIS_PASSWORD


def embedded_server(config: TownConfig) -> EmbeddedServer:
    """The town's own redis-server (``[redis] server`` picks the binary)."""
    binary = (config.data.get("redis") or {}).get("server") or None
    return EmbeddedServer(config.root / ".tt", binary)
