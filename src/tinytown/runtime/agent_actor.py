"""The agent actor: takes messages from its inbox, runs one CLI round per batch.

Delivery is at-least-once. A message moves atomically from the inbox to the agent's
in-flight list and is removed from there (acknowledged) only after its effect is
recorded. Whatever is still in flight when an actor starts (after a crash, a shutdown,
a restart) is handled again; handlers are idempotent (a task already finished, or no
longer assigned to this agent, is skipped).

The actor's lifecycle (runtime/lifecycle.py) belongs to the supervisor and outlives each
run, so a ``close``, ``kill`` or shutdown given while the actor restarts still holds.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

import trio

from tinytown.errors import CliNotFoundError, ConfigError, NotFoundError
from tinytown.model import (
    Agent,
    AgentState,
    MessageType,
    StatusResponse,
    dumps,
    loads,
    now,
)
from tinytown.runtime.context import Context
from tinytown.runtime.gates import RoundGates
from tinytown.runtime.lifecycle import Life, Lifecycle
from tinytown.runtime.mailbox import TAKE_BATCH, Held, Mailbox
from tinytown.runtime.process import RunningProcess
from tinytown.runtime.proctree import ProcessLedger, signal_tree
from tinytown.runtime.rounds import Change
from tinytown.runtime.starts import Ready, Start, Starts
from tinytown.runtime.wakeups import Token
from tinytown.services.agentcli.spec import CliSpec
from tinytown.services.executables import check_cli_installed
from tinytown.store.records import Conflict, GuardFailed, Guards, Op


class AgentActor(RoundGates):
    """One agent's message loop and rounds (runtime/rounds.py, and runtime/gates.py for
    what a round waits for). The supervisor runs it (again after a crash) and calls its
    control methods; it never outlives the supervisor's nursery."""

    def __init__(self, ctx: Context, agent_id: str, life: Lifecycle, starts: Starts) -> None:
        self.ctx = ctx
        self.starts = starts  # start-up reads and writes shared with other actors
        self.id = agent_id
        self.life = life
        self.keys = ctx.town.keys
        self.name = agent_id[:8]
        self.argv: list[str] = []
        self.spec = CliSpec("", ())
        self.proc: RunningProcess | None = None
        self.failed_rounds = 0
        self.transient_rounds = 0
        self.retry_at: float | None = None
        self._noted: str | None = None
        self.mailbox = Mailbox(ctx, agent_id, lambda: self.name)

    # -- one run -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run until the agent ends (cold, error) or its lifecycle says stop.

        Cancellation (a kill, or the town's shutdown after its grace) cancels the round's
        process group (SIGTERM, ``runtime.kill_grace``, SIGKILL, reaped) and leaves the
        held messages in flight; the supervisor records a kill. Any other exception is a
        crash: the supervisor restarts the actor, which re-handles what is in flight.
        """
        self.proc = None
        self.failed_rounds = self.transient_rounds = 0
        self.retry_at = self._noted = None
        self.mailbox = Mailbox(self.ctx, self.id, lambda: self.name)
        # One read with the other actors starting now (runtime/starts.py); it also
        # re-reads tinytown.toml when it changed (a CLI added with `tt config`).
        start = await self.starts.read(self.id)
        if start is None:
            return  # no such agent (pruned, or a reconcile request for a wrong id)
        agent = start.agent
        self.name = agent.name
        if agent.state.terminal or self.life.state in (Life.KILLED, Life.STOPPING):
            return
        try:
            self.spec = self.starts.cli_spec(agent.cli)
        except ConfigError as exc:
            reason = str(exc)
            await self._change(lambda a: a.transition("error", state_reason=reason), "error")
            return
        self.argv = list(self.spec.argv)
        try:
            self.starts.check_installed(
                check_cli_installed, self.argv, self.spec.name, self.ctx.workdir(agent)
            )
        except CliNotFoundError:
            reason = self.ctx.config.explain_missing_cli(self.spec.name, self.argv[0])
            await self._change(lambda a: a.transition("error", state_reason=reason), "error")
            return
        # What a previous run left in flight (read again: the mailbox is new and holds it).
        held = await self.mailbox.recover() if start.inflight else []
        await self._retry_interrupted(held)
        if agent.state is AgentState.DRAINING or self.life.state is Life.DRAINING:
            await self._end_closed(held)
            return
        if agent.state is AgentState.PAUSED:
            self.life.try_fire("interrupt")
        elif self.life.try_fire("ready"):
            await self._ready(start)
        # An inbox seen empty after the token was taken: the first take would find
        # nothing, so wait on that token instead (a message pushed since has fired it).
        empty = start.token if start.inbox_empty and not held else None
        del start  # its raw record would stay alive with this frame: ~1 KiB per agent
        await self._loop(held, empty)

    async def _ready(self, start: Start) -> None:
        """Record ``ready`` (unless paused or stopped meanwhile): with the other actors
        starting now in one atomic write; alone if the record changed under the batch."""

        def ready(a: Agent) -> Agent:
            if self.life.state is Life.IDLE and a.state is not AgentState.PAUSED:
                return a.transition("ready", current_task=None, started_at=a.started_at or now())
            return a

        if not await self.starts.ready(Ready(self.id, ready, start)):
            await self._change(ready, "ready")

    async def _loop(self, held: Held, empty: Token | None = None) -> None:
        """Take, handle and wait until the lifecycle ends the run. ``empty``: a token
        taken before the inbox was seen empty (the first take is skipped)."""
        while True:
            state = self.life.state
            if state is Life.DRAINING:
                await self._end_closed(held)
                return
            if state.intent:  # stopping or killed: held messages stay in flight
                return
            token = self.ctx.hub.token(self.id)
            if state is Life.PAUSED:
                await self.ctx.hub.wait(self.id, token)
                continue
            if empty is not None:
                token, empty, taken = empty, None, []
            else:
                taken = await self.mailbox.take()
            held += taken
            held = await self.mailbox.answer_runtime_messages(held, self._status)
            if any(m.actionable for _, m in held):
                self.life.mark_busy()
                await self._backoff_after_failures()
                if not self.life.can("begin_round"):
                    continue  # paused, closed or stopping meanwhile: the loop decides again
                held, settled = await self._round(held)
                if settled is None:
                    continue  # no round ran (paused, closed, held meanwhile): decide again
                limit = settled.max_rounds
                if limit is not None and settled.rounds_completed >= limit:
                    await self._change(lambda a: a.transition("cool"), "max rounds")
                    return
                continue
            if len(taken) >= TAKE_BATCH or self.mailbox.unchecked:
                continue  # more may be queued: take again before sleeping
            if self.life.mark_idle():
                self.ctx.hub.notify("backlog")  # an idle agent may take backlog work
            if await self._wait_or_go_cold(token, held):
                return

    async def _wait_or_go_cold(self, token: Token, held: Held) -> bool:
        """Wait idle for a wake-up. With ``agent.idle_timeout_secs`` > 0 (Rust Tinytown's
        idle timeout), an agent idle that long (no round since it became idle) goes
        ``cold`` instead; returns True then. Cancellable."""
        timeout = self.ctx.setting("agent.idle_timeout_secs")
        since = self.life.idle_since
        if timeout <= 0 or since is None or self.life.state is not Life.IDLE:
            await self.ctx.hub.wait(self.id, token)
            return False
        with trio.move_on_at(since + timeout):
            await self.ctx.hub.wait(self.id, token)
            return False
        return await self._cool_when_idle(held, timeout)

    async def _cool_when_idle(self, held: Held, timeout: float) -> bool:
        """Record ``cold`` after the idle timeout, only if the agent is still idle with an
        empty inbox (checked in the same atomic step: work handed over meanwhile keeps it
        working). Held notes go back to the head of the inbox. Returns whether it cooled."""
        self.life.mark_busy()  # the dispatcher no longer picks this agent
        key = self.keys.agent(self.id)
        store = self.ctx.store
        returned = self.ctx.queues.return_ops(self.id, [raw for raw, _ in held])
        reason = f"idle for {timeout:g} s (agent.idle_timeout_secs)"
        while True:
            raw = await store.get_raw(key)
            if raw is None:
                raise _gone(self.id)
            agent = loads(Agent, raw, where=key)
            if agent.state is not AgentState.IDLE or self.life.state is not Life.IDLE:
                return False
            new = agent.transition("cool", state_reason=reason)
            ops = [*returned, self.ctx.town.agents.state_event(agent, new, "idle timeout")]
            try:
                await store.apply(
                    key,
                    expected=raw,
                    new=dumps(new),
                    ops=ops,
                    guards=[
                        (["LLEN", self.keys.inbox(self.id)], 0),
                        # nothing delivered straight into flight meanwhile either
                        (["LLEN", self.keys.inflight(self.id)], len(held)),
                    ],
                )
            except Conflict:
                continue  # the record changed meanwhile: look again
            except GuardFailed:  # a message arrived: not idle any more
                self.mailbox.look_again()  # (in flight, its announcement maybe lost)
                return False
            break
        self.mailbox.acked(held)
        self.life.try_fire("close")
        self.ctx.report(f"{self.name}: cold after being {reason}")
        return True

    async def _end_closed(self, held: Held) -> None:
        """Closed: messages taken but not worked on go back to the head of the inbox (still
        queued for a restart), in the same atomic step as the ``cold`` record."""
        # Everything in flight goes back: delivered messages whose announcement the hub
        # has not had yet are there too (read, not guessed).
        held = held + await self.mailbox.recover()
        returned = self.ctx.queues.return_ops(self.id, [raw for raw, _ in held])
        await self._change(lambda a: a.transition("cool"), "closed", returned)
        self.mailbox.acked(held)

    async def _retry_interrupted(self, held: Held) -> None:
        """A task this agent was running when its previous run died is run again."""
        for _, msg in held:
            if msg.type is MessageType.TASK_ASSIGN:
                await self.ctx.town.tasks.retry(msg.body.task_id, self.id)  # type: ignore[union-attr]

    async def _status(self) -> StatusResponse:
        agent = await self.ctx.town.agents.get(self.id)
        return StatusResponse(agent.state.value, agent.current_task)

    # -- control (called by the supervisor) -------------------------------------------

    async def interrupt(self) -> Agent:
        """Pause now (SIGSTOP to a running round). Refused (InvalidTransitionError, nothing
        changed) when closing or stopping. Cancellable once the pause is in effect."""
        self._check("interrupt")
        agent = await self._change(lambda a: a.transition("interrupt"), "interrupt")
        self.life.fire("interrupt")
        if self.proc:
            self.proc.suspend()
        self.ctx.hub.notify(self.id)
        return agent

    async def resume(self) -> Agent:
        """Continue a paused agent (SIGCONT to a suspended round). Cancellable."""
        self._check("resume")
        in_round = self.life.state is Life.PAUSED_ROUND
        verb = "resume_working" if in_round else "resume_idle"
        agent = await self._change(lambda a: a.transition(verb), "resume")
        self.life.fire("resume")
        if self.proc:
            self.proc.resume()
        self.ctx.hub.notify(self.id)
        return agent

    async def close(self) -> Agent:
        """Drain: take nothing more; a round in progress finishes (resumed if paused),
        then the agent goes ``cold``. Cancellable once recorded ``draining``."""
        self._check("close")
        agent = await self._change(lambda a: a.transition("close"), "close")
        self.life.fire("close")
        if self.proc:
            self.proc.resume()  # the current round must be able to finish
        self.ctx.hub.notify(self.id)
        return agent

    async def record_kill(self) -> Agent:
        """Record ``stopped`` and give the work back (in-flight messages to the inbox, tasks
        to the backlog). Called by the supervisor once the actor's run is cancelled, shielded
        under a deadline. Cancellable: cancelled half-way, the agent may be recorded
        ``stopped`` with its work not yet given back (``tt recover`` finds it). The
        round's process-ledger entry goes with the same write (its tree was reaped)."""
        ledger_cleared = [ProcessLedger(self.ctx.store).clear_op(self.id)]
        agent = await self._change(lambda a: a.transition("kill"), "kill", ledger_cleared)
        await self.ctx.town.lifecycle.release_work(agent)
        return agent

    def kill_now(self) -> None:
        """A second signal: SIGKILL the round's process tree at once, without the grace
        (the cancellation that follows reaps it). The group is still ours: the round's
        leader is not reaped before ``run_cli`` returns and ``proc`` is cleared."""
        if self.proc is not None:
            signal_tree(self.proc.pid, self.proc.marker, signal.SIGKILL)

    def _check(self, event: str) -> None:
        if not self.life.can(event):
            self.life.fire(event)  # raises the one-sentence refusal

    async def _change(
        self, fn: Change, verb: str, extra_ops: Sequence[Op] = (), guards: Guards = ()
    ) -> Agent:
        """Read-modify-write the agent record (with a state event when the state moves);
        ``guards`` must hold too (GuardFailed otherwise, nothing changed)."""

        def change(a: Agent) -> tuple[Agent, list[Op]]:
            new = fn(a)
            ops = [*extra_ops]
            if new.state != a.state:
                ops.append(self.ctx.town.agents.state_event(a, new, verb))
            return new, ops

        return await self.ctx.store.update(
            Agent, self.keys.agent(self.id), change, missing=lambda: _gone(self.id), guards=guards
        )


def _gone(agent_id: str) -> Exception:
    return NotFoundError(f"Agent {agent_id} no longer exists.")
