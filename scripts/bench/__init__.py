"""Benchmark Tinytown against the physical limit and a peer job queue, in one invocation.

    python scripts/bench.py [--quick] [--json] [--only NAME ...] [--profile DIR]
    cd scripts && python -m bench ...                      (the same)

Modules: :mod:`.figures` (the registry of figures and groups), :mod:`.env` (the private
Redis, towns, processes), :mod:`.procfs`, :mod:`.report` (table, machine), :mod:`.run`
(the command line), and one module per figure group: :mod:`.latency`, :mod:`.throughput`,
:mod:`.tasks`, :mod:`.broadcast`, :mod:`.spawn`, :mod:`.control`, :mod:`.cli`.
Method: docs/performance.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent
REPO = SCRIPTS.parent
# The helpers next to the package (bench_child, bench_rq_job), and this checkout's source
# ahead of any installed tinytown.
for _path in (SCRIPTS, REPO / "src"):
    if _path.is_dir() and str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
