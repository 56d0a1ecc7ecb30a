"""Floors in one trio process: what the leanest round, and the leanest send, could reach.

SLOTS concurrent trio tasks in this process, each taking task ids from a list and, per task:
a take (LMOVE), a start script (the task's and the agent's records SET, an event XADD), the
CLI (`true`) spawned exactly as a round spawns it (runtime/spawn.py: the spawner thread,
`setpriv --pdeathsig` where available, three pipes drained to EOF, reaped), and a finish
script (two SETs, the LREM of the take, an XADD). Nothing else a round does: no guards,
no transitions, no round record, usage, ledger, log, dispatch or mail. Informative (in the
task figure's details), beside the peers measured in the same invocation.

The send floor (the message throughput figure's details): SENDERS concurrent trio tasks
in this process, each sending with one call per message: a message envelope built and
encoded as ``MessageService.send`` does (``Message.new``, ``dumps``) and a delivery script
that only pushes it and publishes the recipient -- no guards, no direct delivery, no event.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import trio

from bench.env import Bench, mono
from bench.peers import SLOTS
from tinytown.model import Message, Ping, dumps
from tinytown.model.ids import SUPERVISOR_ID, new_id
from tinytown.runtime.spawn import spawn
from tinytown.store.client import Redis

PREFIX = "bench:floor:"

START = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '10000', '*', 'kind', 'round_started', 'task', ARGV[3])
return 1
"""
DELIVER = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1
"""
FINISH = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('LREM', KEYS[4], 1, ARGV[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', '10000', '*', 'kind', 'round_ended', 'task', ARGV[3])
return 1
"""


def run(b: Bench, n: int) -> dict[str, Any]:
    """Time n floor rounds; returns the elapsed time and this process's CPU per round."""
    queue, taken, events = f"{PREFIX}q", f"{PREFIX}taken", f"{PREFIX}events"
    b.r.delete(queue, taken, events)
    b.r.rpush(queue, *[f"t{i}" for i in range(n)])
    cpu0 = time.process_time()
    elapsed = trio.run(_rounds, b.server.url, queue, taken, events)
    cpu = time.process_time() - cpu0
    leftover = list(b.r.scan_iter(f"{PREFIX}*", count=1000))
    if leftover:
        b.r.delete(*leftover)
    return {"elapsed": elapsed, "cpu_per_round": cpu / n}


async def _rounds(url: str, queue: str, taken: str, events: str) -> float:
    redis = Redis(url)
    env = dict(os.environ)

    async def slot(i: int) -> None:
        agent_key = f"{PREFIX}agent:{i}"
        while True:
            task_id = await redis.execute("LMOVE", queue, taken, "LEFT", "RIGHT")
            if task_id is None:
                return
            task_key = f"{PREFIX}task:{task_id}"
            keys = [task_key, agent_key, events]
            await redis.execute(
                "EVAL", START, 3, *keys, _record(task_id, "running"), _record(i, "working"),
                task_id,
            )  # fmt: skip
            proc = await spawn(["true"], os.getcwd(), env)
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            await proc.stdin.aclose()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drain, proc.stdout)
                nursery.start_soon(_drain, proc.stderr)
            await proc.wait()
            await proc.stdout.aclose()
            await proc.stderr.aclose()
            await redis.execute(
                "EVAL", FINISH, 4, *keys, taken, _record(task_id, "completed"),
                _record(i, "idle"), task_id,
            )  # fmt: skip

    try:
        t0 = mono()
        async with trio.open_nursery() as nursery:
            for i in range(SLOTS):
                nursery.start_soon(slot, i)
        return mono() - t0
    finally:
        await redis.aclose()


async def _drain(stream: trio.abc.ReceiveStream) -> None:
    while await stream.receive_some(65536):
        pass


def _record(ident: object, state: str) -> str:
    """A record about the size of a small task or agent record."""
    return json.dumps({"id": str(ident), "state": state, "text": "x" * 300})


def sends(b: Bench, n: int, senders: int) -> dict[str, Any]:
    """Time n floor sends from ``senders`` concurrent tasks; returns the elapsed time and
    this process's CPU per send."""
    cpu0 = time.process_time()
    elapsed = trio.run(_sends, b.server.url, n, senders)
    cpu = time.process_time() - cpu0
    b.r.delete(f"{PREFIX}inbox")
    return {"elapsed": elapsed, "cpu_per_send": cpu / n}


async def _sends(url: str, n: int, senders: int) -> float:
    redis = Redis(url)
    recipient = new_id()
    inbox, wake = f"{PREFIX}inbox", f"{PREFIX}wake"

    async def sender(count: int) -> None:
        for _ in range(count):
            payload = dumps(Message.new(SUPERVISOR_ID, recipient, Ping()))
            await redis.execute("EVAL", DELIVER, 2, inbox, wake, payload, recipient)

    try:
        t0 = mono()
        async with trio.open_nursery() as nursery:
            for i in range(senders):
                nursery.start_soon(sender, n // senders + (1 if i < n % senders else 0))
        return mono() - t0
    finally:
        await redis.aclose()
