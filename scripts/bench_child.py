"""Helper processes for scripts/bench.py (not a user tool).

    python scripts/bench_child.py host TOWN_DIR        host a town (Runtime, no echo) until SIGTERM
    python scripts/bench_child.py control TOWN_DIR     run control verbs read from stdin
    python scripts/bench_child.py sender TOWN_DIR AGENT  send a PING per stdin line
    python scripts/bench_child.py floor N              the floor: N parked trio tasks + 1 SUBSCRIBE
    python scripts/bench_child.py echo SOCKET          redis-py BLPOP echo for the latency baseline

Times are CLOCK_MONOTONIC, which every process on the machine shares, so the parent can
subtract a time taken here from one taken there.
"""

from __future__ import annotations

import json
import os
import sys
import time


def mono() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def rss_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def say(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def host(town_dir: str) -> None:
    """Host the town in this process, like ``tt run --no-repl`` but without the event echo."""
    import trio

    from tinytown.runtime.town_runtime import run_town

    def ready(_rt: object) -> None:
        say({"ready": mono(), "pid": os.getpid()})

    trio.run(lambda: run_town(town_dir, echo=None, handle_signals=True, on_ready=ready))


def control(town_dir: str) -> None:
    """Connected once; then for each stdin line ``VERB AGENT``: time the API call."""
    import trio

    from tinytown.services.town import Town

    async def main() -> None:
        town = await Town.connect(town_dir)
        try:
            say({"ready": mono()})
            while True:
                line = await trio.to_thread.run_sync(sys.stdin.readline)
                if not line.strip() or line.strip() == "quit":
                    return
                verb, name = line.split()
                handle = await town.agent(name)  # resolved before the clock starts
                t0 = mono()
                await getattr(handle, verb)()
                say({"verb": verb, "t0": t0, "t1": mono()})
        finally:
            await town.aclose()

    trio.run(main)


def sender(town_dir: str, agent: str) -> None:
    """Connected once; for each stdin line, send one PING to ``agent`` through the API and
    print its id and the CLOCK_MONOTONIC time the send call started."""
    import trio

    from tinytown.model import MessageType
    from tinytown.services.town import Town

    async def main() -> None:
        town = await Town.connect(town_dir)
        try:
            handle = await town.agent(agent)
            say({"ready": mono()})
            while (await trio.to_thread.run_sync(sys.stdin.readline)).strip() == "go":
                t0 = mono()
                mid = await handle.send(MessageType.PING)
                say({"id": mid, "t0": t0, "t1": mono()})
        finally:
            await town.aclose()

    trio.run(main)


def floor(n: int, url: str) -> None:
    """The cheapest possible 'town' of n idle actors: one pub/sub connection, n parked tasks
    each holding a small dict. Prints RSS before and after, then idles until killed."""
    import trio

    from tinytown.store.client import Redis

    async def actor(state: dict[str, object], event: trio.Event) -> None:
        await event.wait()

    async def main() -> None:
        redis = Redis(url)
        before = rss_kib()
        async with redis.dedicated() as conn, trio.open_nursery() as nursery:
            await conn.send("SUBSCRIBE", "bench:floor")
            await conn.read_reply()
            before = rss_kib()
            events = []
            for i in range(n):
                ev = trio.Event()
                events.append(ev)
                nursery.start_soon(actor, {"id": f"{i:036d}", "state": "idle", "n": i}, ev)
            await trio.sleep(0.2)
            say({"rss_before": before, "rss_after": rss_kib(), "pid": os.getpid()})
            await conn.read_reply()  # blocks forever (nobody publishes)

    trio.run(main)


def echo(socket_path: str) -> None:
    """Baseline partner: BLPOP bench:ping, note when it arrived, LPUSH that time to bench:pong."""
    import redis

    r = redis.Redis(unix_socket_path=socket_path)
    r.ping()
    say({"ready": mono()})
    while True:
        _, value = r.blpop(["bench:ping"]) or (None, b"stop")  # no timeout: never None
        t = mono()
        if value == b"stop":
            return
        r.lpush("bench:pong", repr(t))


if __name__ == "__main__":
    mode, arg = sys.argv[1], sys.argv[2]
    if mode == "host":
        host(arg)
    elif mode == "control":
        control(arg)
    elif mode == "sender":
        sender(arg, sys.argv[3])
    elif mode == "floor":
        floor(int(arg), sys.argv[3])
    elif mode == "echo":
        echo(arg)
    else:
        raise SystemExit(f"unknown mode {mode}")
