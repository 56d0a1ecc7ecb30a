"""The control queue, reliably: each request is claimed (moved to a claimed list), parsed
into a typed request, performed, and removed only together with its answer.

Nothing a requester sends is lost or done twice: a claim whose reply is lost is
recovered from the claimed list (requests already being handled are skipped by raw
value); a malformed request, or any exception of a handler, becomes an error reply (when
the request's id can be read), a ``control-error`` event and a report line, and the
town goes on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from tinytown.errors import ReplyLostError, TinytownError
from tinytown.model.control import ControlRequest, parse_request, request_id
from tinytown.runtime.batching import Batcher
from tinytown.runtime.context import Context
from tinytown.services.control import CONTROL_WAKE
from tinytown.store.records import Op

#: Requests claimed per round trip (a batch spawn of 10,000 sends as many reconcile
#: requests: each claim also waits its turn on the busy event loop).
CLAIM_BATCH = 1000
#: Answers written in one atomic step (a batch spawn's thousands of reconcile requests).
ANSWER_BATCH = 500
Perform = Callable[[ControlRequest], Awaitable[dict[str, Any]]]
#: Performs a request at once, without I/O, if it can (True); e.g. a reconcile request
#: only starts an actor. Such requests skip a task of their own each.
Instant = Callable[[ControlRequest], bool]


class ControlDesk:
    def __init__(self, ctx: Context, perform: Perform, instant: Instant | None = None) -> None:
        self.ctx = ctx
        self.perform = perform
        self.instant = instant
        self._handling: set[str] = set()  # raw requests claimed and not yet answered
        self._answers: Batcher[list[Op], None] = Batcher(self._answer_many, ANSWER_BATCH)

    def loops(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """What the supervisor must keep running beside :meth:`run` (the answer writer)."""
        return [("control answers", self._answers.run)]

    async def run(self, nursery: trio.Nursery) -> None:
        """Claim and handle requests until cancelled; each is handled in ``nursery``.

        Cancellable at every wait. Requests claimed when cancelled stay in the claimed
        list: the next runtime drops them (their requesters gave up after 10 s)."""
        queues = self.ctx.queues
        recheck = True  # requests claimed earlier by this runtime but not seen
        while True:
            token = self.ctx.hub.token(CONTROL_WAKE)
            try:
                raws = await queues.claim_control(CLAIM_BATCH)
            except ReplyLostError:
                raws, recheck = [], True
            if recheck:
                recheck = False
                raws = [*await queues.control_claimed(), *raws]
            done: list[Op] = []  # answers of the requests performed at once
            for raw in raws:
                if raw in self._handling:
                    continue
                request = self._parse_instant(raw)
                if request is not None and self.instant is not None and self.instant(request):
                    done += queues.answer_ops(raw, request.id, None)  # wants no reply
                    continue
                self._handling.add(raw)
                nursery.start_soon(self.handle, raw)
            if done:  # after their effect; lost or cancelled: still claimed, done again
                await self._answer_many([done])
            if not raws:
                await self.ctx.hub.wait(CONTROL_WAKE, token)

    def _parse_instant(self, raw: str) -> ControlRequest | None:
        """The request, when it is well formed and wants no reply (a candidate to be
        performed at once); None sends it down the ordinary path."""
        try:
            request = parse_request(raw)
        except Exception:
            return None  # refused (with its event and report line) by handle()
        return None if request.wants_reply else request

    async def handle(self, raw: str) -> None:
        """Parse, perform and answer one claimed request; never raises (except
        Cancelled). Cancellable: the request then stays claimed, unanswered."""
        rid = request_id(raw)
        reply: dict[str, Any] | None
        try:
            request = parse_request(raw)
            reply = await self.perform(request)
            if not request.wants_reply:
                reply = None
        except Exception as exc:  # one bad request or handler bug must not end the town
            why = str(exc) if isinstance(exc, TinytownError) else f"{type(exc).__name__}: {exc}"
            reply = {"ok": False, "error": why}
            self.ctx.report(f"control request refused: {why} ({raw[:100]})")
            await self._event(why, raw)
        await self._answer(raw, rid, reply)

    async def _answer(self, raw: str, rid: str | None, reply: dict[str, Any] | None) -> None:
        """Answer and un-claim the request, in one atomic step with the other answers of
        the moment. Cancellable: the request then stays claimed (handled again by the
        next runtime, or answered by the batch already sent)."""
        await self._answers.submit(self.ctx.queues.answer_ops(raw, rid, reply))
        self._handling.discard(raw)

    async def _answer_many(self, answers: list[list[Op]]) -> list[None]:
        ops = [op for answer in answers for op in answer]
        while True:
            try:
                await self.ctx.store.run_ops(ops)
                return [None] * len(answers)
            except ReplyLostError:
                continue  # answering twice is harmless (answer_ops is idempotent)

    async def _event(self, why: str, raw: str) -> None:
        try:
            await self.ctx.store.run_ops(
                [self.ctx.store.event_op("control-error", text=f"{why} ({raw[:200]})"[:300])]
            )
        except ReplyLostError:
            pass  # the event may be recorded; the report line and reply are what matter
