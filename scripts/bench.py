#!/usr/bin/env python
"""Benchmark Tinytown: a thin shim over the package ``scripts/bench/`` (see its docstring).

python scripts/bench.py [--quick] [--json] [--only NAME ...] [--profile DIR]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package beside this file

from bench.run import main

sys.exit(main())
