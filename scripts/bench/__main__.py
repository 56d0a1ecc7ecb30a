"""``python -m bench`` (from scripts/) runs the bench."""

import sys

from bench.run import main

sys.exit(main())
