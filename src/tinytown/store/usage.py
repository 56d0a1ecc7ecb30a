"""The town's usage totals (tokens, dollars, rounds, run time): one Redis hash,
``tt:<town>:usage``, added to atomically with each round's acknowledgement."""

from __future__ import annotations

from tinytown.model import Usage
from tinytown.store.indexes import _pairs
from tinytown.store.records import Op, Store

#: The hash's fields: each a field of :class:`~tinytown.model.Usage`.
INT_FIELDS = ("input_tokens", "output_tokens", "cached_tokens", "rounds")
FLOAT_FIELDS = ("cost_usd", "duration")


def add_usage_ops(store: Store, usage: Usage) -> list[Op]:
    """Ops adding ``usage`` to the town's totals (HINCRBY / HINCRBYFLOAT; zero fields are
    skipped). Run them in the same atomic step as what they account for."""
    key = store.keys.usage
    ops: list[Op] = []
    for name in INT_FIELDS:
        value = int(getattr(usage, name))
        if value:
            ops.append(["HINCRBY", key, name, str(value)])
    for name in FLOAT_FIELDS:
        amount = float(getattr(usage, name))
        if amount:
            ops.append(["HINCRBYFLOAT", key, name, repr(amount)])
    return ops


async def town_usage(store: Store) -> Usage:
    """The town's totals so far (zero when nothing was recorded). Cancellable."""
    fields = _pairs(await store.redis.execute("HGETALL", store.keys.usage))

    def number(name: str, kind: type[int] | type[float]) -> int | float:
        try:
            return kind(float(fields.get(name, 0)))
        except (TypeError, ValueError):
            return kind(0)  # a hand-edited field: counted from zero

    return Usage(
        input_tokens=int(number("input_tokens", int)),
        output_tokens=int(number("output_tokens", int)),
        cached_tokens=int(number("cached_tokens", int)),
        cost_usd=round(float(number("cost_usd", float)), 6),
        rounds=int(number("rounds", int)),
        duration=round(float(number("duration", float)), 3),
    )
