"""Coalescing many tasks' single requests into one batch call (one round trip for many).

When thousands of actors start at once (a batch spawn, a town restarted), each would
read its record and write its ``ready`` state alone: thousands of round trips, and as
many pooled connections opened at once. A :class:`Batcher` lets each task submit its
one item and wait; a single loop takes everything submitted meanwhile (up to a limit)
and hands it to one batch call. Under no load a lone item waits one scheduler tick.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import trio

T = TypeVar("T")
R = TypeVar("R")


class _Pending(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.done = trio.Event()
        self.result: R | None = None
        self.error: BaseException | None = None


class Batcher(Generic[T, R]):
    """Items submitted by many tasks, handled ``limit`` at a time by ``handle`` (one
    result per item, in order). :meth:`run` must run (in a nursery that outlives the
    submitters) for :meth:`submit` to return."""

    def __init__(self, handle: Callable[[list[T]], Awaitable[Sequence[R]]], limit: int) -> None:
        self._handle = handle
        self._limit = limit
        self._queue: list[_Pending[T, R]] = []
        self._queued = trio.Event()

    def __len__(self) -> int:
        """Items submitted and not yet taken by the loop."""
        return len(self._queue)

    async def submit(self, item: T) -> R:
        """Hand ``item`` to the next batch and return its result, or raise the batch's
        exception. Cancellable: a cancelled submitter's item may still be handled (its
        result is then dropped), so a batch call must be safe to have done for nobody."""
        pending: _Pending[T, R] = _Pending(item)
        self._queue.append(pending)
        self._queued.set()
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    async def run(self) -> None:
        """Handle batches until cancelled. An exception of the batch call is given to
        every submitter of that batch (each decides, e.g. an actor crashes and restarts);
        the loop goes on. Cancellable: items not yet handled stay queued for a new run."""
        while True:
            await self._queued.wait()
            await trio.sleep(0)  # tasks woken in the same tick join this batch
            batch, self._queue = self._queue[: self._limit], self._queue[self._limit :]
            if not self._queue:
                self._queued = trio.Event()
            try:
                results = await self._handle([p.item for p in batch])
            except trio.Cancelled:
                self._queue[:0] = batch  # not handled (or not known to be): next run
                self._queued.set()
                raise
            except Exception as exc:
                for pending in batch:
                    pending.error = exc
                    pending.done.set()
                continue
            for pending, result in zip(batch, results, strict=True):
                pending.result = result
                pending.done.set()
