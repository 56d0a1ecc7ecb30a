"""``python -m tinytown`` is ``tt``."""

from tinytown.entry import main

raise SystemExit(main())
