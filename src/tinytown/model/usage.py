"""What rounds cost, and the limits a town puts on it."""

from __future__ import annotations

import enum

import attrs


@attrs.frozen
class Usage:
    """Tokens and dollars spent, as the CLIs report them (zero when a CLI reports none).

    Added with ``+``: an agent's and a town's totals are sums of their rounds' usage.
    ``cached_tokens`` are input tokens served from the provider's cache (already counted in
    ``input_tokens`` where the CLI counts them so; see docs/agents.md)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    rounds: int = 0
    duration: float = 0.0  # seconds of CLI run time

    @property
    def tokens(self) -> int:
        """Tokens counted against a token budget: input plus output."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            round(self.cost_usd + other.cost_usd, 6),
            self.rounds + other.rounds,
            round(self.duration + other.duration, 3),
        )

    @property
    def empty(self) -> bool:
        return self == Usage()


@attrs.frozen
class Budget:
    """A spending limit: dollars and/or tokens (None: no limit on that measure)."""

    usd: float | None = None
    tokens: int | None = None

    def exceeded_by(self, usage: Usage) -> str | None:
        """One phrase saying which limit ``usage`` reached, or None."""
        if self.usd is not None and usage.cost_usd >= self.usd:
            return f"${usage.cost_usd:.2f} of ${self.usd:.2f}"
        if self.tokens is not None and usage.tokens >= self.tokens:
            return f"{usage.tokens:,} of {self.tokens:,} tokens"
        return None


class Keep(enum.Enum):
    KEEP = "keep"


#: "Leave this limit as it is" when a budget is set (None removes a limit).
KEEP = Keep.KEEP
