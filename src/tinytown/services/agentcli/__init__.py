"""Agent CLIs as they are: presets, how each reports a round, and how a round failed.

``presets`` (the built-in commands and their flags), ``spec`` (:class:`CliSpec`, what
the runtime drives), ``results`` (one parser per output format), ``classify`` and
``resettime`` (how a failed round failed, and when a rate limit ends), ``report`` (the
shared :class:`RoundReport`), ``safety`` (the notice for permission-skipping presets).
"""

from tinytown.services.agentcli.report import Outcome, RoundReport
from tinytown.services.agentcli.safety import safety_notice
from tinytown.services.agentcli.spec import CliSpec, CliSpecError

__all__ = ["CliSpec", "CliSpecError", "Outcome", "RoundReport", "safety_notice"]
