"""streaQ worker app: ``streaq run bench.peer_apps.streaq_app:worker`` (8 concurrent tasks)."""

from __future__ import annotations

from streaq import Worker

from bench.peer_apps import QUEUE, SLOTS, SOCKET, run_true_async

worker = Worker(redis_url=f"unix://{SOCKET}", queue_name=QUEUE, concurrency=SLOTS)


@worker.task()
async def job() -> int:
    return await run_true_async()
