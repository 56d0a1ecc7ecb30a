"""The process ledger: rounds recorded while they run, leftovers of a dead runtime killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.runtime.conftest import alive, log_pids
from tinytown import TaskState
from tinytown.runtime.guard import MARKER_ENV
from tinytown.runtime.proctree import ProcEntry, ProcessLedger
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.localproc import boot_id, host, start_ticks
from tinytown.services.town import Town
from tinytown.store.lease import procs_key

TREE_CLI = Path(__file__).parent / "clis" / "tree_cli.py"
pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")


async def _until(predicate, what: str, limit: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    with trio.move_on_after(limit):
        while not predicate():
            await trio.sleep(0.01)
        return
    pytest.fail(f"timed out waiting for {what}")


def _tree_pids(log: Path) -> dict[str, int]:
    import re

    text = log.read_text() if log.exists() else ""
    return {kind: int(pid) for kind, pid in re.findall(r"(\w+)-pid (\d+)", text)}


@pytest.fixture
def orphan_tree(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """A tree CLI started the way a round starts it (own group, a marker), but by nobody
    who will clean up: what a runtime killed by kill -9 leaves when its guard died too."""
    marker = f"test.{uuid.uuid4().hex}"
    log = tmp_path / "tree.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(TREE_CLI)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            env={"PATH": os.defpath, MARKER_ENV: marker},
            start_new_session=True,
        )
    try:
        yield proc, marker, log
    finally:
        for pid in [proc.pid, *_tree_pids(log).values()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()


async def test_a_round_is_in_the_ledger_from_before_its_cli_until_it_is_settled(
    town: Town, runtime: Runtime, tmp_path: Path
) -> None:
    """The entry (the round's marker, host, boot) is written by the round's first write,
    before the CLI starts, and removed by its settling write: a crash at any point in
    between leaves what the next `tt run` needs to find the round's processes."""
    handle = await town.spawn_agent("w")
    await handle.wait(idle=True, timeout=20)
    go = tmp_path / "go"
    task_id = await handle.assign(f"pid; waitfile {go}")
    with trio.fail_after(30):
        while not (pids := log_pids(town, "w", "agent-pid")):
            await trio.sleep(0.01)
    raw = await town.redis.execute("HGET", procs_key(town.store), handle.id)
    entry = ProcEntry.loads(raw)
    assert (entry.host, entry.boot_id) == (host(), boot_id())
    environ = Path(f"/proc/{pids[0]}/environ").read_bytes().split(b"\0")
    assert f"{MARKER_ENV}={entry.marker}".encode() in environ  # the CLI carries it
    go.touch()
    await handle.wait(idle=True, timeout=20)
    assert (await town.tasks.get(task_id)).state is TaskState.COMPLETED
    assert await town.redis.execute("HLEN", procs_key(town.store)) == 0


@pytest.mark.parametrize("with_pid", [False, True], ids=["as-the-runtime-records", "with-pid"])
async def test_reap_leftovers_kills_the_group_and_setsid_descendants(
    town: Town, orphan_tree: tuple[subprocess.Popen[bytes], str, Path], with_pid: bool
) -> None:
    proc, marker, log = orphan_tree
    await _until(lambda: "cli" in _tree_pids(log), "the orphan tree to start")
    pids = _tree_pids(log)
    ledger = ProcessLedger(town.store)
    entry = ProcEntry.before_start(marker)
    if with_pid:  # as older versions wrote it: the leader's pid and start time too
        entry = ProcEntry(host(), boot_id(), proc.pid, start_ticks(proc.pid), marker)
    await town.store.run_ops([ledger.record_op("agent-1", entry)])
    notes = await ledger.reap_leftovers()
    assert len(notes) == 1 and "agent-1: killed leftover round processes" in notes[0]
    assert str(pids["setsid"]) in notes[0]
    proc.wait(timeout=5)  # our child: reap it
    await _until(lambda: not any(map(alive, pids.values())), "the whole tree to die", limit=5)
    assert await town.redis.execute("HLEN", procs_key(town.store)) == 0


async def test_reap_leftovers_spares_other_hosts_reused_pids_and_drops_bad_entries(
    town: Town, tmp_path: Path
) -> None:
    bystander = subprocess.Popen(["sleep", "60"])  # a live pid that no round owns
    try:
        ledger = ProcessLedger(town.store)
        elsewhere = ProcEntry("another-host", "boot", bystander.pid, None, "m1")
        reused = ProcEntry(host(), boot_id(), bystander.pid, 1, "m2")  # started at tick 1
        other_boot = ProcEntry(host(), "an-earlier-boot", bystander.pid, None, "m3")
        await town.store.run_ops(
            [
                ledger.record_op(agent, entry)
                for agent, entry in (("a1", elsewhere), ("a2", reused), ("a3", other_boot))
            ]
        )
        await town.redis.execute("HSET", procs_key(town.store), "a4", "not json")
        await town.redis.execute("HSET", procs_key(town.store), "a5", json.dumps({"pid": 1}))
        notes = await ledger.reap_leftovers()
        # reap_leftovers has returned: every kill it would send has been sent
        assert bystander.poll() is None and alive(bystander.pid)
        assert sum("another host or boot" in n for n in notes) == 2
        assert sum("corrupt" in n for n in notes) == 2
        assert not any("killed leftover" in n for n in notes)
        assert await town.redis.execute("HLEN", procs_key(town.store)) == 0
    finally:
        bystander.kill()
        bystander.wait()


# -- the sweeps shared by rounds that end together ---------------------------------------


def _marked_sleeper(marker: str) -> subprocess.Popen[bytes]:
    """A process that left our group (setsid) carrying ``marker``: only a sweep finds it."""
    return subprocess.Popen(
        ["sleep", "60"], env={"PATH": os.defpath, MARKER_ENV: marker}, start_new_session=True
    )


async def test_rounds_ending_together_share_one_scan_and_each_is_swept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tinytown.runtime import proctree

    scans: list[set[str]] = []
    first_scan_started, release = threading.Event(), threading.Event()
    real = proctree._kill_all_marked

    def scan(markers: set[str], origins: list[tuple[int, int | None]]) -> None:
        scans.append(set(markers))
        if len(scans) == 1:
            first_scan_started.set()
            release.wait(10)  # hold the first scan while the other rounds ask
        real(markers, origins)

    monkeypatch.setattr(proctree, "_kill_all_marked", scan)
    markers = [f"test.{uuid.uuid4().hex}" for _ in range(4)]
    procs = [_marked_sleeper(m) for m in markers]
    try:
        sweeps = proctree.Sweeps()
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sweeps.sweep, markers[0])
                await trio.to_thread.run_sync(first_scan_started.wait)
                for marker in markers[1:]:  # they end while the first scan runs
                    nursery.start_soon(sweeps.sweep, marker)
                await trio.testing.wait_all_tasks_blocked()
                release.set()
        # The late three did not count on the scan already running: one more, for all.
        assert scans == [{markers[0]}, set(markers[1:])]
        for proc in procs:
            assert proc.wait(5) == -signal.SIGKILL
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _fake_proc(monkeypatch: pytest.MonkeyPatch, *, last: int, pid_max: int, forks: int) -> None:
    from tinytown.runtime import guard

    files = {
        "/proc/loadavg": f"0.1 0.2 0.3 2/103 {last}\n".encode(),
        "/proc/sys/kernel/pid_max": f"{pid_max}\n".encode(),
        "/proc/stat": f"cpu  1 2 3\nprocesses {forks}\nprocs_running 1\n".encode(),
    }
    monkeypatch.setattr(guard, "_read", lambda path: files.get(path, b""))


def test_only_pids_allocated_since_a_round_began_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from tinytown.runtime.guard import pids_since

    _fake_proc(monkeypatch, last=5_000, pid_max=32_768, forks=1_100)
    young = pids_since(4_000, forks_before=1_000)  # 100 forks since pid 4000
    assert young is not None
    assert [young(p) for p in (3_999, 4_000, 4_500, 5_000, 5_001, 1)] == [
        False, True, True, True, False, False
    ]  # fmt: skip
    # Wrapped once at pid_max: the range goes round.
    _fake_proc(monkeypatch, last=200, pid_max=32_768, forks=1_100)
    wrapped = pids_since(32_000, forks_before=1_000)
    assert wrapped is not None
    assert [wrapped(p) for p in (31_999, 32_000, 32_767, 1, 200, 201)] == [
        False, True, True, True, True, False
    ]  # fmt: skip
    # So many forks that the pids may have gone all the way round: read everything.
    _fake_proc(monkeypatch, last=5_000, pid_max=32_768, forks=1_000 + 16_384)
    assert pids_since(4_000, forks_before=1_000) is None
    assert pids_since(4_000, forks_before=None) is None  # no fork count: cannot tell


def test_a_bounded_sweep_still_finds_a_round_s_setsid_descendant(tmp_path: Path) -> None:
    from tinytown.runtime.guard import fork_count, marked_processes

    marker = f"test.{uuid.uuid4().hex}"
    before = fork_count()
    leader = _marked_sleeper(marker)  # stands for the round's CLI (and its descendants)
    try:
        found = marked_processes([marker], since=(leader.pid, before))
        assert found == {marker: [leader.pid]}
    finally:
        leader.kill()
        leader.wait()
