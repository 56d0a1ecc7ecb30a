"""Why the runtime has its own trio Redis adapter: LPUSH latency by client, same server.

Usage: python scripts/client_choice.py [N]   (starts a private redis-server)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
import trio

from tinytown.store.client import Redis
from tinytown.store.server import EmbeddedServer


def per_op(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e6:7.1f} µs"


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp) / ".tt")
        server.start()
        try:
            sync = redis.Redis(unix_socket_path=str(server.socket_path))
            samples = []
            for _ in range(n):
                t = time.perf_counter()
                sync.lpush("bench", "x")
                samples.append(time.perf_counter() - t)
            print(f"redis-py sync               {per_op(samples)}")

            async def threaded() -> list[float]:
                out = []
                for _ in range(n // 5):
                    t = time.perf_counter()
                    await trio.to_thread.run_sync(sync.lpush, "bench", "x")
                    out.append(time.perf_counter() - t)
                return out

            print(f"redis-py sync via to_thread {per_op(trio.run(threaded))}")

            async def native() -> list[float]:
                client = Redis(server.url)
                out = []
                for _ in range(n):
                    t = time.perf_counter()
                    await client.execute("LPUSH", "bench", "x")
                    out.append(time.perf_counter() - t)
                await client.aclose()
                return out

            print(f"tinytown trio + hiredis     {per_op(trio.run(native))}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
