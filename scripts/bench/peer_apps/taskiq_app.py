"""taskiq worker app: ``taskiq worker bench.peer_apps.taskiq_app:broker --workers 1
--max-async-tasks 8`` (Redis list queue)."""

from __future__ import annotations

from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

from bench.peer_apps import QUEUE, SOCKET, run_true_async

backend: RedisAsyncResultBackend[int] = RedisAsyncResultBackend(
    f"unix://{SOCKET}", result_ex_time=600
)
broker = ListQueueBroker(f"unix://{SOCKET}", queue_name=QUEUE).with_result_backend(backend)


@broker.task
async def job() -> int:
    return await run_true_async()
