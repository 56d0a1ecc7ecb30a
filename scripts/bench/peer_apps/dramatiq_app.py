"""Dramatiq worker app: ``dramatiq bench.peer_apps.dramatiq_app --processes 1 --threads 8``."""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peer_apps import QUEUE, SOCKET, run_true

broker = RedisBroker(unix_socket_path=SOCKET)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def job() -> None:
    run_true()
