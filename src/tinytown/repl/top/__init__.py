"""The live dashboard (``tt top``): the town at a glance, and an interface to it.

Modules: ``model.py`` (the tracker: the view kept live from the event stream and the
wake-ups), ``view.py`` (the view it publishes), ``logtail.py`` (an agent's latest output
line and round clock, read from the end of its log), ``rows.py`` (filtering, sorting and
formatting the header and the agent table), ``screen.py`` (the prompt-toolkit
application), ``keys.py`` (its keys), ``canvas.py`` (cheap drawing of the big parts),
``dashboard.py`` (running it on the trio side, and the actions), ``switch.py`` (one key
between the REPL and the dashboard).
See docs/dashboard.md.
"""

from tinytown.repl.top.dashboard import Dashboard, run_dashboard

__all__ = ["Dashboard", "run_dashboard"]
