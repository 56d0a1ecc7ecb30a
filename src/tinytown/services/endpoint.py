"""Which Redis a town uses: an external server (``REDIS_URL`` or ``[redis] url``) or its
embedded one, reached through the 0700 Unix socket in ``.tt/``."""

from __future__ import annotations

import os

from tinytown.services import legacy
from tinytown.services.config import TownConfig
from tinytown.store.server import EmbeddedServer


def redis_url(config: TownConfig) -> str | None:
    """An external server's URL (``REDIS_URL``, ``[redis] url``, or a Rust config's TCP
    Redis), else None (embedded)."""
    url = os.environ.get("REDIS_URL") or (config.data.get("redis") or {}).get("url") or None
    # Rust Tinytown: its TCP Redis ([redis] use_socket = false), TINYTOWN_REDIS_PASSWORD
    return legacy.url_with_password(url or legacy.rust_redis_url(config.data))


def embedded_server(config: TownConfig) -> EmbeddedServer:
    """The town's own redis-server (``[redis] server`` picks the binary)."""
    binary = (config.data.get("redis") or {}).get("server") or None
    return EmbeddedServer(config.root / ".tt", binary)
