"""Atomic batches of list and stream commands, sent as flat script arguments.

``Store.apply`` encodes its ops as one JSON document that the script decodes with
``cjson`` (and long arguments as extra ARGV), which is right for a record's
compare-and-set. The message path (a send, a batch of pongs, the supervisor filing its
mail, acknowledgements) changes no record, and there the JSON costs more than the work:
~20 us of Python and a ``cjson.decode`` per call. :data:`~tinytown.store.scripts.FLAT`
takes the same ops as they are (each prefixed by its length), so the only encoding is
RESP's.

Each op is passed to ``redis.call`` with ``unpack``, so it may have up to a few thousand
words (Lua's stack); a batch may hold any number of ops.

Only for ops that write no record (lists, streams, PUBLISH, sorted sets): the store's
per-process record cache learns of record writes through ``Store.apply`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tinytown.store.client import Arg
from tinytown.store.records import GuardFailed, Store
from tinytown.store.scripts import FLAT

Guard = tuple[Sequence[Arg], Any]  # (command, expected integer reply)


def flat_args(ops: Sequence[Sequence[Arg]], guards: Sequence[Guard] = ()) -> list[Arg]:
    """FLAT's ARGV: the guard count, each guard (length, command, expected reply as text),
    then each op (length, command)."""
    args: list[Arg] = [len(guards)]
    for cmd, want in guards:
        args.append(len(cmd))
        args.extend(cmd)
        args.append(str(want))
    for op in ops:
        args.append(len(op))
        args.extend(op)
    return args


async def run_flat(
    store: Store, ops: Sequence[Sequence[Arg]], guards: Sequence[Guard] = ()
) -> None:
    """Check ``guards`` (each a command and the integer it must reply), then run ``ops``,
    atomically, in one round trip. Raises GuardFailed(i) (nothing ran) when guard i
    failed.

    Not idempotent: after a lost reply raises ReplyLostError (the ops may or may not
    have run), never runs them twice. Cancellable; once sent, a cancelled call may or may
    not have run.
    """
    if not ops and not guards:
        return
    result = await store.redis.run_script(FLAT, [], flat_args(ops, guards))
    if result < 0:
        raise GuardFailed(-result - 1)
