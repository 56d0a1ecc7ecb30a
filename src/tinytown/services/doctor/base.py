"""The vocabulary of ``tt doctor``: a check's verdict, one line of its report, and the
agent CLI a check looks at."""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs


class Level(enum.StrEnum):
    """A check's verdict: ``FAIL`` blocks work, ``warn`` may, ``skip`` was not checked."""

    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@attrs.frozen
class Check:
    """One line of the doctor's report: what (``subject``, ``name``), the verdict and
    one sentence."""

    subject: str
    name: str
    level: Level
    text: str

    def as_dict(self) -> dict[str, str]:
        return {
            "subject": self.subject,
            "check": self.name,
            "level": str(self.level),
            "text": self.text,
        }


def program_kind(argv: Sequence[str]) -> str:
    """Which known CLI ``argv`` runs: ``claude``, ``codex``, ``gemini``, or ``""``."""
    name = os.path.basename(argv[0]) if argv else ""
    return name if name in ("claude", "codex", "gemini") else ""


@attrs.frozen
class CliTarget:
    """One CLI to check, as the town's rounds run it: ``argv`` (the preset's command),
    the directory and environment its rounds get, and who runs them (``euid``)."""

    subject: str
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]
    euid: int = attrs.field(factory=os.geteuid)

    @property
    def kind(self) -> str:
        return program_kind(self.argv)
