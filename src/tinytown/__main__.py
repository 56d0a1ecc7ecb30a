"""``python -m tinytown`` is ``tt``."""

from tinytown.cli.main import main

raise SystemExit(main())
