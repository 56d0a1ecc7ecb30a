"""The bottom toolbar: the town, whether it runs, agent counts by state, open tasks."""

from __future__ import annotations

from collections.abc import Callable

from tinytown.cli.output import plural
from tinytown.repl.snapshot import Snapshot

SEPARATOR = " · "


def toolbar_text(snap: Snapshot) -> str:
    """E.g. ``myproj · running (pid 4242) · idle 3 · working 2 · paused 1 · 4 open tasks``."""
    parts = [snap.town or "town"]
    if not snap.loaded:
        return SEPARATOR.join([*parts, "loading…"])
    parts.append(f"running (pid {snap.runtime.pid})" if snap.runtime else "not running")
    counts = snap.counts()
    if counts:
        parts += [f"{state.value} {n}" for state, n in counts.items()]
    else:
        parts.append("no agents")
    parts.append(plural(len(snap.open_tasks), "open task"))
    if snap.stale:
        parts.append("Redis unreachable")
    return SEPARATOR.join(parts)


def make_toolbar(current: Callable[[], Snapshot]) -> Callable[[], str]:
    """The ``bottom_toolbar`` callable for the prompt: renders the latest snapshot."""

    def render() -> str:
        return " " + toolbar_text(current())

    return render
