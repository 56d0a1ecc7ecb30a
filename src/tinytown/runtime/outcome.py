"""What a finished round means: its verdict and text, the replies it owes, and the agent
record as a round starts. Pure functions of their inputs (no I/O)."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from tinytown.errors import InvalidTransitionError
from tinytown.model import Agent, AgentState, Informational, Message
from tinytown.runtime.process import RoundResult


def verdict(result: RoundResult) -> tuple[bool, str]:
    """Whether the round succeeded, and the text recorded on its tasks."""
    ok = result.returncode == 0 and not result.timed_out
    if result.timed_out:
        return ok, f"timed out; stderr: {result.stderr_tail.strip()}".strip()
    if ok:
        return ok, result.stdout_tail.strip() or "(no output)"
    tail = result.stderr_tail.strip() or result.stdout_tail.strip()
    return ok, f"exit {result.returncode}: {tail}"


def replies(agent_id: str, requests: Sequence[Message], ok: bool, detail: str) -> list[Message]:
    """An ``informational`` reply with the outcome to each request from someone else."""
    out = []
    for msg in requests:
        if msg.sender != agent_id:
            summary = f"re: {msg.text[:80]} -> {'done' if ok else 'failed'}: {detail[-1000:]}"
            out.append(
                Message.new(agent_id, msg.sender, Informational(summary), correlation_id=msg.id)
            )
    return out


def round_state(agent: Agent, current: str | None) -> Agent:
    """The record as a round starts, checked against the state it is written over: a
    live agent works; a paused one stays paused (its process starts suspended); one that
    is closing keeps draining while the round that already began finishes."""
    if agent.state in (AgentState.STARTING, AgentState.IDLE, AgentState.WORKING):
        return agent.transition("work", current_task=current)
    if agent.state in (AgentState.PAUSED, AgentState.DRAINING):
        return attrs.evolve(agent, current_task=current)
    raise InvalidTransitionError(f"Agent {agent.name} is {agent.state.value}; no round starts.")
