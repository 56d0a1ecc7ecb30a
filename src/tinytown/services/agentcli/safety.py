"""The notice ``tt spawn`` prints once per town for a CLI that skips its own permission
prompts (issue 11, point 9)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tinytown.services.agentcli.presets import BYPASS_FLAGS, SAFER, program

if TYPE_CHECKING:  # spec.py pulls the round classifiers (zoneinfo ...): `tt send` needs none
    from tinytown.services.agentcli.spec import CliSpec


def safety_notice(spec: CliSpec) -> str | None:
    """One or two sentences saying which flag of ``spec``'s command skips the CLI's
    permission prompts, what that allows, and the safer choice; None if none does."""
    flags = spec.bypass_flags
    if not flags:
        return None
    shown = " ".join(f"--{f.lstrip('-').replace('=', ' ')}" if "=" in f else f for f in flags)
    what = BYPASS_FLAGS[flags[0]]
    safer = SAFER.get(spec.name)
    instead = (
        f"use the {safer!r} preset, which keeps {program(spec.argv)}'s own checks"
        if safer
        else f"set [agent_clis.{spec.name}] command without it"
    )
    return (
        f"CLI {spec.name!r} runs {program(spec.argv)} with {shown}: the agent {what},"
        f" with your user's rights. Run such agents where that is acceptable (a container"
        f" or VM), or {instead} (see docs/agents.md)."
    )
