"""What a finished round means: the text recorded on its tasks, what becomes of each
task, the replies it owes, how its cost is shared, and the agent record as a round
starts. Pure functions of their inputs (no I/O)."""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs

from tinytown.errors import InvalidTransitionError
from tinytown.model import Agent, AgentState, Informational, Message, Task, Usage
from tinytown.runtime.process import RoundResult
from tinytown.services.agentcli.report import Outcome, RoundReport


class Fate(enum.Enum):
    """What a round does to one of its tasks."""

    COMPLETE = "complete"
    FAIL = "fail"
    RETRY = "retry"  # back to the agent's queue, the attempt counted
    RETRY_UNCOUNTED = "retry_uncounted"  # back, the attempt taken back (not the task's fault)


def fate(outcome: Outcome, task: Task, default_attempts: int) -> Fate:
    """A task's fate: ``ok`` completes it; a real failure fails it once its attempts
    (``Task.max_attempts``, else the town's ``runtime.max_attempts``) are used up and
    retries it before; rate limits and transient failures retry it (counted); a setup
    failure gives it back uncounted."""
    if outcome is Outcome.OK:
        return Fate.COMPLETE
    if outcome is Outcome.SETUP:
        return Fate.RETRY_UNCOUNTED
    if outcome is Outcome.FAILED:
        limit = task.max_attempts or default_attempts
        return Fate.FAIL if task.attempts >= limit else Fate.RETRY
    return Fate.RETRY


def detail(report: RoundReport, result: RoundResult, structured: bool) -> str:
    """The text recorded on the round's tasks: the CLI's answer when it succeeded, else
    what went wrong (the CLI's own words; for plain-text CLIs the end of stderr)."""
    if report.ok:
        if structured:
            return report.answer.strip() or "(no answer)"
        return report.answer.strip() or result.stdout_tail.strip() or "(no output)"
    if result.timed_out:
        return f"timed out; stderr: {result.stderr_tail.strip()}".strip()
    if result.stopped_by is not None or result.returncode is None:
        return report.message or "stopped"
    if structured:
        return f"exit {result.returncode}: {report.message or report.answer.strip()}"
    tail = result.stderr_tail.strip() or result.stdout_tail.strip()
    return f"exit {result.returncode}: {tail}"


def split_usage(usage: Usage, n: int) -> list[Usage]:
    """``usage`` shared evenly by ``n`` tasks (remainders to the first); rounds and run
    time are each task's whole (every task was in the round)."""
    if n <= 1:
        return [usage] * max(n, 0)

    def share(total: int, i: int) -> int:
        return total // n + (1 if i < total % n else 0)

    return [
        Usage(
            share(usage.input_tokens, i),
            share(usage.output_tokens, i),
            share(usage.cached_tokens, i),
            round(usage.cost_usd / n, 6),
            usage.rounds,
            usage.duration,
        )
        for i in range(n)
    ]


def summary(round_no: int, outcome: Outcome, usage: Usage) -> str:
    """The round event's text: ``round 3 ok: 1,234 tokens, $0.0123, 4.5 s``."""
    parts = [f"{usage.tokens:,} tokens"]
    if usage.cost_usd:
        parts.append(f"${usage.cost_usd:.4f}")
    parts.append(f"{usage.duration:.1f} s")
    return f"round {round_no} {outcome.value}: {', '.join(parts)}"


def replies(agent_id: str, requests: Sequence[Message], ok: bool, text: str) -> list[Message]:
    """An ``informational`` reply with the outcome to each request (``task``, ``query``)
    from someone else. Informational messages are never answered: callers pass only
    actionable requests, and anything else given here is skipped."""
    out = []
    for msg in requests:
        if msg.sender != agent_id and msg.actionable:
            summary_ = f"re: {msg.text[:80]} -> {'done' if ok else 'failed'}: {text[-1000:]}"
            out.append(
                Message.new(agent_id, msg.sender, Informational(summary_), correlation_id=msg.id)
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


def waiting(agent: Agent, reason: str) -> Agent:
    """The record of a live agent waiting before its round (for a slot, a rate limit):
    the reason shown in status; other states are left as they are."""
    if agent.state in (AgentState.STARTING, AgentState.IDLE, AgentState.WORKING):
        return attrs.evolve(agent, state_reason=reason)
    return agent
