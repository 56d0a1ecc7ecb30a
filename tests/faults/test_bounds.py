"""Bounded growth (issue 9, point 6): a flooding agent cannot fill the disk."""

from __future__ import annotations

from tests.faults.faultkit import FaultTown

MAX = 64 * 1024
KEEP = 2


def test_a_flooding_cli_is_held_to_the_log_rotation_bound(ft: FaultTown) -> None:
    ft.ok("config", "runtime.log_max_bytes", str(MAX))
    ft.ok("config", "runtime.log_keep", str(KEEP))
    ft.spawn("f", cli="ledger")
    proc = ft.start_run()
    ft.wait_state("f", "idle")
    flood = 4 * 1024 * 1024  # 64 times the limit
    task = ft.assign("f", f"flood {flood}")
    ft.wait_task(task, "completed", timeout=60)
    second = ft.assign("f", f"flood {flood}")
    ft.wait_task(second, "completed", timeout=60)
    logs = ft.root / ".tt" / "logs"
    files = sorted(p.name for p in logs.iterdir())
    used = sum((logs / name).stat().st_size for name in files)  # the whole of .tt/logs
    assert used <= (KEEP + 1) * MAX, f"{used} bytes in {files}"
    assert len([f for f in files if f.startswith("f.log")]) == KEEP + 1, files
    assert used >= KEEP * MAX  # it did log (the newest output is kept)
    assert proc.poll() is None
