"""What a round waits for before its CLI starts, in this order: the backoff after
failures, the hold on its CLI after a rate limit (town-wide), a free slot under
``runtime.max_parallel_rounds`` (town-wide, first come first served), and the budgets
(an agent over its budget, or any agent once the town is over its own, is paused).

Every wait ends at once when the agent is interrupted, closed, killed or the town
stops, and the round does not start then (the actor's loop decides again). A wait that
lasts is shown as the agent's state reason, written once per wait (never per check)."""

from __future__ import annotations

import trio

from tinytown.model import Agent, Usage
from tinytown.runtime.mailbox import Held
from tinytown.runtime.outcome import waiting
from tinytown.runtime.ratelimit import clock_time
from tinytown.runtime.rounds import Pause, RoundRunner
from tinytown.services import budgets
from tinytown.store.usage import town_usage

#: A round waiting this long for a slot shows ``waiting for a slot`` (shorter waits, the
#: common case under load, write nothing).
SLOT_NOTE_AFTER = 0.5


class RoundGates(RoundRunner):
    async def _round(self, held: Held) -> tuple[Held, Agent | None]:
        """Wait for the CLI's hold, a slot and the budgets, then run one round; return
        what stays held and the settled agent (None: no round ran, the loop decides
        again). Cancellable: cancelled while waiting, nothing changed; cancelled during
        the round, the process group is stopped and the messages stay in flight."""
        if not await self._wait_for_cli():
            return held, None
        slots = self.ctx.slots
        taken = slots.try_take()
        if not taken and not await self._wait_for_slot():
            return held, None
        async with slots.holding(taken=True):
            if self.ctx.holds.remaining(self.spec.name) > 0 or not self.life.can("begin_round"):
                return held, None  # held or paused meanwhile: decide again
            why = await self._over_budget()
            if why is not None:
                await self._pause_now(why)
                return held, None
            self.life.fire("begin_round")
            self._noted = None  # the round's record clears the reason
            try:
                return await self._round_body(held)
            finally:
                self.proc = None
                self.life.try_fire("end_round")

    async def _wait_unless_stopped(self, wait: trio.Event | float) -> bool:
        """Wait for ``wait`` (an event, or until a trio time); False when the agent's
        lifecycle forbade a round meanwhile (interrupt, close, stop). Cancellable."""
        finished = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                while self.life.can("begin_round"):
                    await self.life.changed()
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            if isinstance(wait, trio.Event):
                await wait.wait()
            else:
                await trio.sleep_until(wait)
            finished = True
            nursery.cancel_scope.cancel()
        return finished and self.life.can("begin_round")

    async def _backoff_after_failures(self) -> None:
        """After 3 tasks in a row failed for good, wait 1, 2, 4 ... 60 s before the next
        round; after a transient failure, until its retry time. A close, kill or
        shutdown ends the wait at once. Cancellable."""
        if self.failed_rounds >= 3:
            delay = min(2.0 ** (self.failed_rounds - 3), 60.0)
            self.ctx.report(f"{self.name}: {self.failed_rounds} failed rounds; waiting {delay:g} s")
            with trio.move_on_after(delay):
                while not self.life.state.intent:
                    await self.life.changed()
        if self.retry_at is not None:
            with trio.move_on_at(self.retry_at):
                while not self.life.state.intent:
                    await self.life.changed()
            if trio.current_time() >= self.retry_at:
                self.retry_at = None

    async def _wait_for_cli(self) -> bool:
        """Wait while the CLI is held after a rate limit (town-wide), showing ``rate
        limit: claude until 12:03:10``. False when the wait was cut short."""
        cli = self.spec.name
        while (left := self.ctx.holds.remaining(cli)) > 0:
            await self._note(f"rate limit: {cli} until {clock_time(left)}")
            if not await self._wait_unless_stopped(trio.current_time() + left):
                self._noted = None
                return False
        return True

    async def _wait_for_slot(self) -> bool:
        """Wait in line for a slot (then held: give it back); ``waiting for a slot`` is
        shown once the wait lasts. False (no slot held) when cut short. Cancellable."""
        got = trio.Event()
        note_at = trio.current_time() + SLOT_NOTE_AFTER

        async def take() -> None:
            await self.ctx.slots.take()
            got.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take)
            with trio.move_on_at(note_at):
                await got.wait()
            if not got.is_set() and self.life.can("begin_round"):
                await self._note("waiting for a slot")
            ok = await self._wait_unless_stopped(got)
            nursery.cancel_scope.cancel()
        if not ok:
            self._noted = None
        if got.is_set() and not ok:
            self.ctx.slots.give()  # taken as the wait was cut short: not ours to keep
        return got.is_set() and ok

    async def _note(self, reason: str) -> None:
        """Show why the agent waits (its state reason), unless it already says so."""
        if self._noted == reason:
            return
        self._noted = reason
        await self._change(lambda a: waiting(a, reason), "wait")

    async def _over_budget(self) -> Pause | None:
        """The pause a reached agent or town budget calls for (reading the totals only
        when such a budget is set). The config file is looked at first (one stat): a
        budget raised with ``tt config`` counts at once. The agent's record is the one
        this process last saw (no read): the round's first write checks the budgets
        again on the record it replaces (rounds.py), so a budget set meanwhile by
        another process still stops the round before its CLI runs; and a limit found
        reached on it is checked again on a fresh read (a budget raised meanwhile by
        another process must not pause the agent)."""
        self.ctx.refresh_config()
        key = self.ctx.town.keys.agent(self.id)
        over = await self._reached(await self.ctx.store.get_known(Agent, key))
        if over is not None:
            over = await self._reached(await self.ctx.store.get(Agent, key))
        if over is None:
            return None
        return Pause(f"budget: {over}", "budget", budgets.advice(over, self.name))

    async def _reached(self, agent: Agent | None) -> str | None:
        """The agent or town limit ``agent``'s record has reached (None: none, or the
        agent is gone: the round's first write finds out). Cancellable."""
        if agent is None:
            return None
        limits = self._limits(agent)
        if not limits.agent and limits.town is None:
            return None
        town = await town_usage(self.ctx.store) if limits.town is not None else Usage()
        return budgets.reached(limits, agent=agent.usage, town=town)
