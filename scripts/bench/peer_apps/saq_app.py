"""SAQ worker app: ``saq bench.peer_apps.saq_app.settings`` (1 process, 8 concurrent jobs)."""

from __future__ import annotations

from typing import Any

import redis.asyncio
from saq.queue.redis import RedisQueue

from bench.peer_apps import QUEUE, SLOTS, SOCKET, run_true_async


def make_queue() -> RedisQueue:
    """SAQ's ``Queue.from_url`` takes no ``unix://`` URL: the client is given instead."""
    return RedisQueue(redis.asyncio.Redis(unix_socket_path=SOCKET), name=QUEUE)


async def job(ctx: dict[str, Any]) -> int:
    return await run_true_async()


settings = {"queue": make_queue(), "functions": [job], "concurrency": SLOTS}
