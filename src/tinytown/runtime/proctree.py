"""Finding and killing a round's whole process tree, during a run and after a crash.

Four mechanisms, because none alone is enough (docs/process-trees.md):

* **Process group.** The CLI leads its own group; signals go to the group.
* **Round marker.** Every round's child gets ``TT_ROUND=<uuid>`` in its environment, which
  its descendants inherit. A descendant that left the group with ``setsid()`` is found by
  scanning ``/proc/*/environ`` for the marker (Linux; elsewhere only the group is reached).
  A descendant that both clears its environment and calls ``setsid()`` escapes.
* **Guard.** A watchdog process kills the rounds' trees when the runtime dies
  (runtime/guard.py); the CLI itself also gets a parent-death signal (process.py).
* **Ledger.** From the round's first write (before its CLI is started) until its settling
  write, the round's marker, host and boot id are recorded in Redis
  (:class:`ProcessLedger`: ops in those two atomic steps, no round trip of their own). A
  ``tt run`` that died by ``kill -9`` cannot clean up, so the next ``tt run`` does it
  (:meth:`ProcessLedger.reap_leftovers`) before any actor starts: every process carrying
  the marker, with the groups they lead (the CLI leads its own). The boot id guards
  against a reboot. (Entries written by hand or by older versions may also name the
  leader's pid and start time: its group is then killed too, unless the pid was reused.)
"""

from __future__ import annotations

import json
import os
import signal

import attrs
import trio

from tinytown.model import now
from tinytown.runtime.guard import MARKER_ENV, kill_marked, marked_processes
from tinytown.services.localproc import boot_id, host, is_local, is_running
from tinytown.store import lease as ops
from tinytown.store.records import Store


def signal_tree(pgid: int, marker: str | None, sig: int, *, group: bool = True) -> list[int]:
    """Send ``sig`` to process group ``pgid`` (if ``group``) and to every process carrying
    ``marker`` together with the groups those lead; return the marked pids signalled."""
    if group:
        _killpg(pgid, sig)
    pids = marked_processes([marker]).get(marker, []) if marker else []
    kill_marked(pids, sig)
    return pids


class Sweeps:
    """The SIGKILL sweep of ended rounds' marked processes, one /proc scan for all the
    rounds that end while a scan runs (a scan reads every process's environment: ~1 ms,
    in a worker thread; eight agents ending rounds together pay for one or two, not
    eight). Each caller returns once a scan that *started after it asked* is done, so a
    round's sweep still sees everything its tree left when it ended."""

    def __init__(self) -> None:
        self._next: set[str] = set()
        self._next_since: list[tuple[int, int | None]] = []
        self._next_done = trio.Event()
        self._scanning = False
        self._turn = trio.Event()  # set when a scan ends (then replaced)

    async def sweep(self, marker: str, since: tuple[int, int | None] | None = None) -> None:
        """SIGKILL every process carrying ``marker`` (and the groups they lead).
        ``since``: (the round's leader pid, the fork count read just before it was
        forked): only processes that may be younger are read (guard.pids_since).
        Not cancellable once asked (call it shielded: a sweep must finish)."""
        markers, done, origins = self._next, self._next_done, self._next_since
        markers.add(marker)
        origins.append(since or (0, None))
        with trio.CancelScope(shield=True):
            while not done.is_set():
                if self._scanning:
                    await self._turn.wait()
                    continue
                self._scanning = True  # this caller scans the batch it is in
                self._next, self._next_done, self._next_since = set(), trio.Event(), []
                try:
                    await trio.to_thread.run_sync(_kill_all_marked, markers, origins)
                finally:
                    self._scanning = False
                    done.set()
                    turn, self._turn = self._turn, trio.Event()
                    turn.set()


def _kill_all_marked(markers: set[str], origins: list[tuple[int, int | None]]) -> None:
    # The oldest round of the batch (fewest forks before it) bounds the pids to read.
    oldest = min(origins, key=lambda o: -1 if o[1] is None else o[1])
    for pids in marked_processes(markers, since=oldest).values():
        kill_marked(pids, signal.SIGKILL)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone (or its id now belongs to someone else's group)


@attrs.frozen
class ProcEntry:
    """One running round's process group, as recorded in the ledger."""

    host: str
    boot_id: str
    pid: int | None  # the CLI, leader of group ``pid`` (None: recorded before it started)
    start: int | None  # start_ticks(pid)
    marker: str
    started_at: str = ""

    @classmethod
    def before_start(cls, marker: str) -> ProcEntry:
        """The entry of a round about to start its CLI with ``marker``."""
        return cls(host(), boot_id(), None, None, marker, now())

    def dumps(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def loads(cls, raw: str) -> ProcEntry:
        data = json.loads(raw)
        start = data.get("start")
        pid = data["pid"]
        return cls(
            str(data["host"]),
            str(data["boot_id"]),
            None if pid is None else int(pid),
            None if start is None else int(start),
            str(data["marker"]),
            str(data.get("started_at", "")),
        )

    def local(self) -> bool:
        """Recorded by a runtime on this host during this boot (so the pid means the same)."""
        return is_local(self.host, self.boot_id)

    def kill(self) -> list[int]:
        """SIGKILL what is left of the round: the group while its leader is the recorded
        process (not a reused pid), and every process carrying the marker. Returns the
        pids known to have been killed."""
        killed = []
        if self.pid is not None and is_running(self.pid, self.start):
            _killpg(self.pid, signal.SIGKILL)
            killed.append(self.pid)
        for pid in signal_tree(0, self.marker, signal.SIGKILL, group=False):
            if pid not in killed:
                killed.append(pid)
        return killed


class ProcessLedger:
    """The town's record of running round processes, kept in Redis (store/lease.py)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record_op(self, agent_id: str, entry: ProcEntry) -> list[str]:
        """The op recording ``entry`` for ``agent_id`` (in the round's first write)."""
        return ["HSET", ops.procs_key(self.store), agent_id, entry.dumps()]

    def clear_op(self, agent_id: str) -> list[str]:
        """The op forgetting ``agent_id``'s round (in the round's settling write)."""
        return ["HDEL", ops.procs_key(self.store), agent_id]

    async def reap_leftovers(self) -> list[str]:
        """Kill what the rounds of a dead runtime left running; call it holding the lease,
        before any actor starts. Returns one line per entry found, for the runtime's log.

        Entries of this host and boot are killed (SIGKILL: the group, if its leader is
        still the recorded process, and every process carrying the round's marker) and
        dropped; entries of another host or boot are dropped with a note (their pids mean
        nothing here). Cancellable: entries not yet dropped are found again next time.
        """
        entries = await ops.ledger_entries(self.store)
        notes: list[str] = []
        for agent_id, raw in entries.items():
            try:
                entry = ProcEntry.loads(raw)
            except (ValueError, KeyError, TypeError):
                notes.append(f"dropped a corrupt process-ledger entry for agent {agent_id}")
                continue
            if not entry.local():
                notes.append(
                    f"agent {agent_id}: round pid {entry.pid} ran on {entry.host} "
                    "(another host or boot); not killed from here"
                )
                continue
            killed = entry.kill()
            if killed:
                pids = ", ".join(map(str, killed))
                notes.append(f"agent {agent_id}: killed leftover round processes {pids}")
        await ops.ledger_drop(self.store, list(entries))
        return notes


__all__ = [
    "MARKER_ENV",
    "ProcEntry",
    "ProcessLedger",
    "Sweeps",
    "marked_processes",
    "signal_tree",
]
