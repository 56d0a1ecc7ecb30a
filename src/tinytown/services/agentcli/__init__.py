"""Agent CLIs as they are: presets, how each reports a round, and how a round failed.

``presets`` (the built-in commands and their flags), ``spec`` (:class:`CliSpec`, what
the runtime drives), ``results`` (one parser per output format), ``classify`` and
``resettime`` (how a failed round failed, and when a rate limit ends), ``report`` (the
shared :class:`RoundReport`), ``safety`` (the notice for permission-skipping presets).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tinytown.services.agentcli.report import Outcome, RoundReport
    from tinytown.services.agentcli.safety import safety_notice
    from tinytown.services.agentcli.spec import CliSpec, CliSpecError

__all__ = ["CliSpec", "CliSpecError", "Outcome", "RoundReport", "safety_notice"]

#: Where each name lives. Imported on first use (PEP 562), not with the package: the
#: config reads ``presets`` on every command, the round classifiers only a runtime needs.
_HOME = {
    "CliSpec": "spec",
    "CliSpecError": "spec",
    "Outcome": "report",
    "RoundReport": "report",
    "safety_notice": "safety",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
