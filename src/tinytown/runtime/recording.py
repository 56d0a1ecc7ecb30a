"""Recording a finished round (nothing is acknowledged before its effect is recorded):

1. each task's fate (runtime/outcome.py) in its own atomic step, with its share of the
   round's usage: completed, failed, or back to ``assigned`` (its message stays held, so
   it is the next round's first; a setup failure takes the attempt back);
2. one atomic step: the handled messages acknowledged, replies sent, the agent settled
   (round count, usage totals, session id, paused when its setup failed or a budget is
   reached), the town's usage totals incremented, the round's event written.

A crash between 1 and 2 leaves the messages in flight: a finished task is then stale and
skipped, a task put back is started again. Also: what a rate limit, a transient failure
or a setup failure does to the agent (holds, backoffs, pauses).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from tinytown.errors import InvalidTransitionError, NotFoundError
from tinytown.model import (
    Agent,
    AgentState,
    Informational,
    Message,
    Task,
    TaskState,
    Usage,
)
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.runtime.context import Context
from tinytown.runtime.lifecycle import Lifecycle
from tinytown.runtime.mailbox import Held, Mailbox
from tinytown.runtime.outcome import Fate, detail, fate, replies, split_usage, summary
from tinytown.runtime.process import RoundResult, RunningProcess
from tinytown.runtime.proctree import ProcessLedger
from tinytown.runtime.ratelimit import clock_time, iso_time
from tinytown.services import budgets
from tinytown.services.agentcli.report import Outcome, RoundReport
from tinytown.services.agentcli.spec import CliSpec
from tinytown.services.doctor.base import CliTarget, Level, program_kind
from tinytown.services.doctor.clis import check_login, locate
from tinytown.store.records import GuardFailed, Guards, Op, Staged
from tinytown.store.usage import add_usage_ops, town_usage

Change = Callable[[Agent], Agent]
#: Waits after transient failures in a row: 2, 4, 8 ... seconds, at most this.
TRANSIENT_MAX_WAIT = 300.0

#: The town's own limits, with the ``[budget]`` section they came from (its repr).
_TOWN_LIMITS: list[Any] = [None, None]

#: How long a free login check may take after a round that could not reach its service.
LOGIN_PROBE_TIMEOUT = 10.0


@attrs.define
class Picked:
    """What one round works on, and what it leaves held."""

    tasks: list[tuple[str, Message, Task]] = attrs.field(factory=list)
    requests: Held = attrs.field(factory=list)
    notes: Held = attrs.field(factory=list)
    stale: Held = attrs.field(factory=list)  # assignments of finished or moved tasks
    staged: list[Staged[Task]] = attrs.field(factory=list)  # the tasks' starts (unwritten)
    marker: str = ""  # the round's process marker (recorded in the process ledger)


@attrs.frozen
class Pause:
    """Why a round pauses its agent: the state reason, the event kind, the mail text."""

    reason: str
    kind: str
    mail: str


class RoundRecorder:
    """Recording the rounds of one agent actor (a base class of the actor, which owns
    the loop and these attributes)."""

    ctx: Context
    id: str
    name: str
    life: Lifecycle
    mailbox: Mailbox
    spec: CliSpec
    proc: RunningProcess | None
    failed_rounds: int  # final failures in a row: a failing CLI backs off
    transient_rounds: int  # transient failures in a row
    retry_at: float | None  # trio time before which no round starts (transient backoff)
    _noted: str | None  # the wait reason last written on the record

    async def _change(
        self, fn: Change, verb: str, extra_ops: Sequence[Op] = (), guards: Guards = ()
    ) -> Agent:
        raise NotImplementedError

    # -- recording -----------------------------------------------------------------------

    def _read(self, result: RoundResult) -> RoundReport:
        """The round's report: the early-stop report when a line ended it, else the
        spec's reading of its exit status and output."""
        if isinstance(result.stopped_by, RoundReport) and result.returncode is None:
            return result.stopped_by
        return self.spec.read(
            result.returncode, result.timed_out, result.stdout_tail, result.stderr_tail
        )

    async def _not_set_up(self, report: RoundReport) -> RoundReport:
        """A CLI that cannot reach its service may simply not be logged in (codex without
        a login retries its connection until stopped): where the CLI can say so for free
        (``claude auth status``, ``codex login status``), ask it once; not logged in makes
        the round a setup failure (the agent pauses with that sentence, its tasks kept)
        instead of a transient one retried for ever. Cancellable (the probe is killed)."""
        if report.outcome is not Outcome.TRANSIENT or not program_kind(self.spec.argv):
            return report
        env = self.ctx.agent_env
        root = self.ctx.town.root
        program = locate(self.spec.argv[0], cwd=root, path=env.get("PATH", os.defpath))
        if program is None:
            return report
        target = CliTarget(self.name, tuple(self.spec.argv), root, env)
        check = await check_login(target, program, LOGIN_PROBE_TIMEOUT)
        if check.level is not Level.FAIL:
            return report
        return attrs.evolve(report, outcome=Outcome.SETUP, message=check.text)

    async def _record(
        self, held: Held, picked: Picked, round_no: int, result: RoundResult
    ) -> tuple[Held, Agent]:
        report = await self._not_set_up(self._read(result))
        outcome = report.outcome
        usage = attrs.evolve(report.usage, rounds=1, duration=round(result.duration, 3))
        text = detail(report, result, structured=self.spec.format != "text")
        default_attempts = int(self.ctx.setting("runtime.max_attempts"))
        tasks = self.ctx.town.tasks
        done: Held = list(picked.stale)
        completed = failed = 0
        spent: list[tuple[str, Usage]] = []  # of the tasks it gives back (budget check)
        finishing: list[tuple[Staged[Task], str, Usage]] = []  # written with the settling
        shares = split_usage(usage, len(picked.tasks))
        for (raw, msg, task), share in zip(picked.tasks, shares, strict=True):
            end = fate(outcome, task, default_attempts)
            if end in (Fate.COMPLETE, Fate.FAIL):
                done.append((raw, msg))
                try:
                    staged = await tasks.stage_finish(task.id, end.value, text, share)
                except InvalidTransitionError:  # the CLI finished it itself, and it counted
                    await tasks.add_usage(task.id, share)
                    continue
                finishing.append((staged, end.value, share))
                completed += staged.record.state is TaskState.COMPLETED
                failed += staged.record.state is TaskState.FAILED
                continue
            back = await tasks.retry_later(
                task.id, self.id, usage=share, counted=end is Fate.RETRY, why=f"{outcome}: {text}"
            )
            if back is None:
                done.append((raw, msg))  # finished by the CLI meanwhile
            else:
                spent.append((task.id, back.usage))
        ops: list[Op] = []
        if outcome in (Outcome.OK, Outcome.FAILED):  # the CLI saw them: answered and done
            done += picked.requests + picked.notes
            for reply in replies(self.id, [m for _, m in picked.requests], report.ok, text):
                ops += self.ctx.store.deliver_ops(reply)
        waiting, pause = self._after(report, bool(failed or not picked.tasks))
        ops += self._round_ops(round_no, report, usage, picked, waiting)
        ops.append(ProcessLedger(self.ctx.store).clear_op(self.id))  # the round is over
        settle = functools.partial(
            self._settle,
            done,
            counted=True,
            usage=usage,
            session=report.session_id,
            pause=pause,
            spent=spent,
            waiting=waiting,
        )
        try:  # the finished tasks, the acknowledgement and the agent: one atomic step
            settled = await settle(
                extra_ops=[*(op for st, _, _ in finishing for op in st.ops), *ops],
                guards=[st.guard for st, _, _ in finishing],
                completed=completed,
            )
        except GuardFailed:  # a task moved since it was read (the CLI finished it itself)
            completed = await self._finish_each(finishing, text)
            settled = await settle(extra_ops=ops, completed=completed)
        self._noted = waiting  # already on the record: the wait that follows need not write it
        return _without(held, done), settled

    async def _finish_each(
        self, finishing: Sequence[tuple[Staged[Task], str, Usage]], text: str
    ) -> int:
        """Finish the tasks one by one (each its own atomic step, read fresh); returns
        how many this round completed. A task finished meanwhile keeps its state and
        gets the round's usage."""
        tasks, completed = self.ctx.town.tasks, 0
        for staged, verb, share in finishing:
            task_id = staged.record.id
            try:
                new = await tasks.finish(task_id, verb, text, count=False, usage=share)
            except InvalidTransitionError:  # the CLI finished it itself, and it counted
                await tasks.add_usage(task_id, share)
                continue
            completed += new.state is TaskState.COMPLETED
        return completed

    def _after(self, report: RoundReport, final_failure: bool) -> tuple[str | None, Pause | None]:
        """Act on the round's outcome (backoffs, CLI holds); return the reason the agent
        now waits for, and the pause its setup failure calls for."""
        outcome, cli = report.outcome, self.spec.name
        if outcome is not Outcome.TRANSIENT:
            self.transient_rounds = 0
        if outcome is Outcome.OK:
            self.failed_rounds = 0
            self.ctx.holds.succeeded(cli)
        elif outcome is Outcome.FAILED:
            self.failed_rounds += 1 if final_failure else 0
        elif outcome is Outcome.RATE_LIMITED:
            backoff = self.ctx.setting("runtime.rate_limit_backoff")
            left = self.ctx.holds.hold(cli, report.retry_after, backoff)
            self.ctx.hub.notify("backlog")  # the dispatcher looks again (and skips this CLI)
            self.ctx.report(f"{self.name}: {cli} rate limited for {left:.0f} s: {report.message}")
            return f"rate limit: {cli} until {clock_time(left)}", None
        elif outcome is Outcome.TRANSIENT:
            self.transient_rounds += 1
            wait = min(2.0**self.transient_rounds, TRANSIENT_MAX_WAIT)
            self.retry_at = trio.current_time() + wait
            return f"backoff: retrying at {clock_time(wait)} ({report.message})"[:300], None
        elif outcome is Outcome.SETUP:
            message = report.message or "the CLI is not set up"
            mail = (
                f"{self.name} paused, its CLI ({cli}) is not set up: {message}. Fix it (log"
                f" in, set the key, change the preset: see docs/agents.md), then tt resume"
                f" {self.name}; its tasks are kept."
            )
            return None, Pause(f"setup: {message}", "setup", mail)
        return None, None

    def _round_ops(
        self, round_no: int, report: RoundReport, usage: Usage, picked: Picked, waiting: str | None
    ) -> list[Op]:
        store = self.ctx.store
        first = picked.tasks[0][2].id if picked.tasks else None
        ops = add_usage_ops(store, usage)
        ops.append(
            store.event_op(
                "round",
                agent=self.id,
                task=first,
                outcome=report.outcome.value,
                input_tokens=str(usage.input_tokens),
                output_tokens=str(usage.output_tokens),
                cached_tokens=str(usage.cached_tokens),
                cost_usd=repr(usage.cost_usd),
                duration=f"{usage.duration:.3f}",
                session=report.session_id,
                text=summary(round_no, report.outcome, usage),
            )
        )
        if report.outcome is Outcome.RATE_LIMITED:
            left = self.ctx.holds.remaining(self.spec.name)
            ops.append(
                store.event_op(
                    "rate_limit",
                    agent=self.id,
                    cli=self.spec.name,
                    until=iso_time(left),
                    text=f"{waiting}: {report.message}"[:300],
                )
            )
        return ops

    def _limits(self, own: Agent | None) -> budgets.Limits:
        """The limits in force (several calls per round: the town's part is worked out
        again only when ``[budget]`` in tinytown.toml changed)."""
        section = self.ctx.config.data.get("budget")
        key = repr(section)  # the limits depend on this section alone (and constants)
        if _TOWN_LIMITS[0] != key:
            _TOWN_LIMITS[:] = [key, budgets.limits(self.ctx.config.setting)]
        town: budgets.Limits = _TOWN_LIMITS[1]
        if own is None or own.budget is None:
            return town
        return attrs.evolve(town, agent=(*town.agent, own.budget))

    async def _settle(
        self,
        done: Held,
        *,
        counted: bool,
        extra_ops: Sequence[Op] = (),
        completed: int = 0,
        usage: Usage | None = None,
        session: str | None = None,
        pause: Pause | None = None,
        spent: Sequence[tuple[str, Usage]] = (),
        waiting: str | None = None,
        guards: Guards = (),
    ) -> Agent:
        """Acknowledge ``done``, send the round's replies and settle the agent, in one
        atomic step: round count, usage totals and session; paused with the reason when
        ``pause`` says so or a budget is now reached (checked against the totals this
        round makes)."""
        acks = self.mailbox.ack_ops(done)
        town_total = None
        if usage is not None and self._limits(None).town is not None:
            town_total = await town_usage(self.ctx.store) + usage
        paused: list[Pause] = []

        def change(a: Agent) -> tuple[Agent, list[Op]]:
            paused.clear()
            state = AgentState.IDLE if a.state is AgentState.WORKING else a.state
            new = attrs.evolve(
                a,
                state=state,
                current_task=None,
                rounds_completed=a.rounds_completed + (1 if counted else 0),
                tasks_completed=a.tasks_completed + completed,
                usage=a.usage + usage if usage is not None else a.usage,
                session_id=session or a.session_id,
            )
            why = pause
            if why is None and usage is not None:
                over = budgets.reached(
                    self._limits(new), agent=new.usage, town=town_total or Usage(), tasks=spent
                )
                if over:
                    why = Pause(f"budget: {over}", "budget", budgets.advice(over, a.name))
            ops = [*extra_ops, *acks]
            if why is not None and new.state in (AgentState.IDLE, AgentState.PAUSED):
                new = attrs.evolve(new, state=AgentState.PAUSED, state_reason=why.reason[:500])
                ops += self._pause_ops(why)
                paused.append(why)
            elif waiting and new.state is AgentState.IDLE:
                new = attrs.evolve(new, state_reason=waiting)
            if new.state != a.state:
                ops.append(self.ctx.town.agents.state_event(a, new, "round done"))
            return new, ops

        settled = await self.ctx.store.update(
            Agent,
            self.ctx.town.keys.agent(self.id),
            change,
            missing=lambda: _gone(self.id),
            guards=guards,
        )
        self.mailbox.acked(done)
        if paused:
            self.life.try_fire("interrupt")
            self.ctx.report(f"{self.name}: paused, {paused[0].reason}")
        return settled

    def _pause_ops(self, why: Pause) -> list[Op]:
        """The event and the supervisor's mail saying why the agent paused."""
        mail = Message.new(self.id, SUPERVISOR_ID, Informational(why.mail))
        event = self.ctx.store.event_op(why.kind, agent=self.id, text=why.reason[:300])
        return [event, *self.ctx.store.deliver_ops(mail)]

    async def _pause_now(self, why: Pause) -> None:
        """Pause before a round (a budget reached): record, event and mail at once."""

        def pause(a: Agent) -> Agent:
            if a.state in (AgentState.STARTING, AgentState.IDLE, AgentState.WORKING):
                return a.transition("interrupt", state_reason=why.reason[:500])
            return a

        agent = await self._change(pause, why.kind, self._pause_ops(why))
        if agent.state is AgentState.PAUSED:
            self.life.try_fire("interrupt")
            self.ctx.report(f"{self.name}: paused, {why.reason}")


def _without(held: Held, done: Held) -> Held:
    """``held`` minus ``done``, in order."""
    gone = {id(m) for _, m in done}
    return [(raw, msg) for raw, msg in held if id(msg) not in gone]


def _gone(agent_id: str) -> Exception:
    return NotFoundError(f"Agent {agent_id} no longer exists.")
