"""The town-wide cap on CLI processes running at once (``runtime.max_parallel_rounds``;
0 = twice the CPU count): a round holds a slot while its CLI runs. Waiting rounds are
served first come, first served (trio's semaphore queue is FIFO), so the agent that has
waited longest goes next and none starves."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio


def slot_count(setting: float) -> int:
    """The cap a ``runtime.max_parallel_rounds`` value means."""
    n = int(setting)
    return n if n > 0 else 2 * (os.cpu_count() or 1)


class RoundSlots:
    def __init__(self, total: int) -> None:
        self.total = max(1, total)
        self._sem = trio.Semaphore(self.total)
        #: The most slots ever held at once (observed by tests and benchmarks).
        self.peak = 0

    @property
    def in_use(self) -> int:
        return self.total - self._sem.value

    def try_take(self) -> bool:
        """Take a slot if one is free now, without waiting (nor jumping the queue: a
        free slot with rounds waiting is already theirs)."""
        if self._sem.statistics().tasks_waiting:
            return False
        try:
            self._sem.acquire_nowait()
        except trio.WouldBlock:
            return False
        self._note()
        return True

    async def take(self) -> None:
        """Wait in line for a slot. Cancellable: cancelled, no slot is held."""
        await self._sem.acquire()
        self._note()

    def give(self) -> None:
        """Give a taken slot back (the next in line gets it)."""
        self._sem.release()

    @asynccontextmanager
    async def holding(self, taken: bool) -> AsyncIterator[None]:
        """Hold a slot for the block (``taken``: it is already held), giving it back at
        the end whatever happens. Cancellable while waiting."""
        if not taken:
            await self.take()
        try:
            yield
        finally:
            self.give()

    def _note(self) -> None:
        self.peak = max(self.peak, self.in_use)
