"""Redis outages under a headless town (issue 9, point 1): the town pauses and goes on.

Each test uses a town with its own embedded redis-server, so killing it or dropping its
connections touches nobody else. The event echo is on (`--no-repl` prints every event):
the echo's reader must ride out the outage like every other connection of the runtime.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.faults.faultkit import FaultTown, alive, until
from tinytown.store.server import EmbeddedServer


def redis_pid(town: FaultTown) -> int:
    return int((town.root / ".tt" / "redis.pid").read_text().strip())


def kill_redis(town: FaultTown) -> None:
    """SIGKILL the town's redis-server (no shutdown save) and wait until it is gone."""
    pid = redis_pid(town)
    os.kill(pid, signal.SIGKILL)
    until(lambda: not alive(pid), 10, what="redis-server gone")
    town.r.connection_pool.disconnect()


def start_runtime(town: FaultTown, mode: str) -> int:
    """`tt run --no-repl` (ours) or `tt run --detach` (a grandchild); returns its pid."""
    return town.start_run().pid if mode == "no-repl" else town.start_detached()


def runtime_log(town: FaultTown, mode: str) -> str:
    if mode == "no-repl":
        return town.run_log()
    path = town.root / ".tt" / "logs" / "runtime.log"
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.parametrize("mode", ["no-repl", "detach"])
def test_redis_sigkill_and_restart_is_survived(embedded_ft: FaultTown, mode: str) -> None:
    town = embedded_ft
    town.spawn("w")
    pid = start_runtime(town, mode)
    town.wait_state("w", "idle")
    before = town.assign("w", "sleep 1; print before the outage")
    town.wait_task(before, "running")
    kill_redis(town)
    # The round ends while Redis is down: its outcome must be recorded after the restart.
    until(
        lambda: not alive(pid) or "before the outage" in _agent_log(town, "w"),
        20,
        what="the round's output",
    )
    assert alive(pid), f"the town died with Redis:\n{runtime_log(town, mode)}"
    EmbeddedServer(town.root / ".tt").start()
    after = town.assign("w", "print after the outage")
    town.wait_task(before, "completed", timeout=30)
    town.wait_task(after, "completed", timeout=30)
    town.wait_state("w", "idle")
    assert town.inflight("w") == 0
    assert alive(pid), f"the town died after the outage:\n{runtime_log(town, mode)}"
    # A second outage, the town idle this time (the echo and the wake-up reader wait).
    kill_redis(town)
    EmbeddedServer(town.root / ".tt").start()
    third = town.assign("w", "print third")
    town.wait_task(third, "completed", timeout=30)
    assert alive(pid), f"the town died in the second outage:\n{runtime_log(town, mode)}"
    assert "Traceback" not in runtime_log(town, mode)


def _agent_log(town: FaultTown, agent: str) -> str:
    path = town.root / ".tt" / "logs" / f"{agent}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def test_dropped_connections_are_survived(embedded_ft: FaultTown) -> None:
    town = embedded_ft
    town.spawn("w")
    proc = town.start_run()
    town.wait_state("w", "idle")
    first = town.assign("w", "sleep 0.5; print first")
    town.wait_task(first, "running")
    killed = town.r.execute_command("CLIENT", "KILL", "TYPE", "normal")
    killed += town.r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed >= 2  # the runtime's connections, its wake-up subscriber among them
    second = town.assign("w", "print second")
    town.wait_task(first, "completed")
    town.wait_task(second, "completed")
    assert proc.poll() is None, f"exit {proc.returncode}:\n{town.run_log()}"
    # Again while idle: control requests (their own loop) still get answered.
    town.r.execute_command("CLIENT", "KILL", "TYPE", "normal")
    town.r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    paused = town.tt("interrupt", "w", timeout=20)
    assert paused.returncode == 0 and "paused" in paused.stdout, paused.stderr
    town.ok("resume", "w", timeout=20)
    third = town.assign("w", "print third")
    town.wait_task(third, "completed")
    # The round's acknowledgement settles the agent in the same atomic step: once idle
    # again, nothing may be left in flight.
    town.wait_state("w", "idle")
    assert town.inflight("w") == 0
    assert proc.poll() is None, f"exit {proc.returncode}:\n{town.run_log()}"
    town.unwatch(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert "Traceback" not in town.run_log()
