"""The runtime lease: short, taken over at once from a dead local holder, robust to junk;
control requests fail fast when the runtime dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import trio

from tests.runtime.conftest import eventually
from tinytown.errors import RuntimeBusyError, RuntimeNotRunningError
from tinytown.runtime.lease import LEASE_MS, Lease, force_clear
from tinytown.services import control
from tinytown.services.localproc import boot_id, host
from tinytown.services.town import Town

RUN = [sys.executable, "-m", "tinytown", "run", "--no-repl"]


def _lease_of(pid: int, *, where: str | None = None, boot: str | None = None) -> str:
    return json.dumps(
        {
            "id": "x",
            "host": where or host(),
            "boot": boot_id() if boot is None else boot,
            "pid": pid,
            "started": "2026-01-01T00:00:00Z",
        }
    )


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def test_a_dead_local_holder_is_not_running_at_once(town: Town) -> None:
    await town.redis.execute("SET", town.keys.runtime, _lease_of(_dead_pid()), "PX", 60_000)
    assert await town.runtime() is None
    # ... while a holder elsewhere (or a live one here) counts until its lease expires
    await town.redis.execute("SET", town.keys.runtime, _lease_of(1, where="other-host"))
    holder = await town.runtime()
    assert holder is not None and holder.host == "other-host"
    await town.redis.execute("SET", town.keys.runtime, _lease_of(os.getpid()))
    assert (await town.runtime()).pid == os.getpid()  # type: ignore[union-attr]


async def test_the_lease_is_short_and_kept(town: Town) -> None:
    lease = Lease(town.store)
    await lease.acquire()
    assert 0 < await town.redis.execute("PTTL", town.keys.runtime) <= LEASE_MS
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lease.keep, 10.0)  # clamped to a third of the lease

        async def retaken() -> bool:
            return await town.redis.execute("GET", town.keys.runtime) == lease.value

        await town.redis.execute("DEL", town.keys.runtime)
        await eventually(retaken, timeout=LEASE_MS / 1000)  # not after 10 s
        nursery.cancel_scope.cancel()
    await town.redis.execute("SET", town.keys.runtime, "someone else")
    with trio.fail_after(LEASE_MS / 1000), pytest.raises(RuntimeBusyError):
        await lease.keep()


async def test_a_corrupt_lease_gets_an_expiry_and_is_waited_out(town: Town) -> None:
    await town.redis.execute("SET", town.keys.runtime, "not json {")  # no expiry
    notes: list[str] = []
    lease = Lease(town.store)
    with trio.fail_after(LEASE_MS / 1000 + 5):
        await lease.acquire(notes.append)
    assert await town.redis.execute("GET", town.keys.runtime) == lease.value
    assert len(notes) == 1 and "unreadable" in notes[0] and "tt down --force" in notes[0]


async def test_a_corrupt_lease_kept_alive_refuses_with_the_way_out(town: Town) -> None:
    await town.redis.execute("SET", town.keys.runtime, "[1, 2]", "PX", 60_000)
    lease = Lease(town.store)

    async def keep_it_alive() -> None:
        while True:  # someone (another version?) refreshes it
            await town.redis.execute("SET", town.keys.runtime, "[1, 2]", "PX", 60_000)
            await trio.sleep(0.2)

    with trio.fail_after(LEASE_MS / 1000 + 5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_it_alive)
            with pytest.raises(RuntimeBusyError, match="tt down --force"):
                await lease.acquire()
            nursery.cancel_scope.cancel()


async def test_force_clear(town: Town) -> None:
    said: list[str] = []
    assert await force_clear(town.store, said.append) is None  # nothing to clear
    await town.redis.execute("SET", town.keys.runtime, "garbage")
    assert await force_clear(town.store, said.append) is None
    assert await town.redis.execute("GET", town.keys.runtime) is None
    assert said == ["Cleared the runtime lease ('garbage')."]
    # a live runtime on this host is not cleared: it must be stopped
    await town.redis.execute("SET", town.keys.runtime, _lease_of(os.getpid()))
    holder = await force_clear(town.store, said.append)
    assert holder is not None and holder.pid == os.getpid()
    assert await town.redis.execute("GET", town.keys.runtime) is not None


async def test_control_request_fails_fast_when_the_runtime_dies(town: Town) -> None:
    stand_in = subprocess.Popen(["sleep", "60"])  # "the runtime": holds the lease, never answers
    try:
        await town.redis.execute("SET", town.keys.runtime, _lease_of(stand_in.pid), "PX", 60_000)
        with trio.fail_after(5):  # the reply timeout is 10 s
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_kill_soon, stand_in)
                with pytest.raises(RuntimeNotRunningError, match="stopped before answering"):
                    await control.request(town.store, "interrupt", agent="a")
    finally:
        stand_in.kill()
        stand_in.wait()


async def _kill_soon(proc: subprocess.Popen[bytes]) -> None:
    await trio.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


async def test_tt_run_waits_out_a_corrupt_lease(town: Town, tt_env: dict[str, str]) -> None:
    await town.redis.execute("SET", town.keys.runtime, "not json {")  # no expiry: forever
    log = town.root / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            RUN,
            cwd=town.root,
            env=tt_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        async def running() -> bool:
            holder = await town.runtime()
            return holder is not None and holder.pid == proc.pid

        await eventually(running, timeout=LEASE_MS / 1000 + 20)
        text = log.read_text()
        assert "unreadable value ('not json {')" in text and "Traceback" not in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
