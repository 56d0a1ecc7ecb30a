"""What one round of an agent's CLI said, read from its output: the shared interface
between the result parsers (results.py), the failure classifier (classify.py) and the
runtime that records rounds."""

from __future__ import annotations

import enum

import attrs

from tinytown.model import Usage


class Outcome(enum.StrEnum):
    """How a round ended, as the runtime acts on it.

    ``ok``: the answer is the tasks' result. ``rate_limited``: the provider refused for
    load or quota; dispatch for that CLI waits (until ``retry_after``, else backoff) and the
    round's tasks go back to the queue, attempt counted. ``transient``: a network or
    timeout problem worth retrying with backoff, attempt counted. ``setup``: the CLI is
    not set up (not logged in, no key, a flag refused): the agent pauses with the CLI's
    message, tasks go back untouched, no attempt counted. ``failed``: a real failure of
    the work; the task fails once its attempts are used up.
    """

    OK = "ok"
    RATE_LIMITED = "rate_limited"
    TRANSIENT = "transient"
    SETUP = "setup"
    FAILED = "failed"


@attrs.frozen
class RoundReport:
    """The round as its CLI reported it.

    ``answer`` is the text recorded as the task's result (the CLI's answer, never raw
    JSON); ``message`` is the CLI's own one-line explanation of a failure (shown in
    state reasons and mail). ``retry_after`` is seconds until a rate limit resets, when
    the CLI said so."""

    outcome: Outcome
    answer: str
    message: str = ""
    session_id: str | None = None
    usage: Usage = attrs.field(factory=Usage)
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK
