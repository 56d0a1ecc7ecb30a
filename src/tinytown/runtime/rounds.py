"""One round of an agent's CLI: what it takes, how it runs, and how it is recorded.

A round takes at most ``runtime.tasks_per_round`` actionable messages (task assignments,
``task`` and ``query`` messages; default 1, so one failure cannot fail a batch), with the
informational notes held so far riding along; the rest stay held for the next rounds, in
order. Its CLI runs through the CLI's spec (services/agentcli): argv per round (session,
MCP), the prompt on stdin or as the last argument, the output read into a RoundReport.

Recording: runtime/recording.py.
"""

from __future__ import annotations

import functools

import trio

from tinytown.errors import InvalidTransitionError, MalformedRecordError, NotFoundError
from tinytown.model import (
    Agent,
    MessageType,
    Task,
    TaskState,
    Usage,
)
from tinytown.model.enums import SpawnMode
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.runtime.guard import process_guard
from tinytown.runtime.lifecycle import Life
from tinytown.runtime.mailbox import Held
from tinytown.runtime.outcome import round_state
from tinytown.runtime.process import (
    STRUCTURED_STDERR_BYTES,
    STRUCTURED_STDOUT_BYTES,
    RoundResult,
    RunningProcess,
    run_cli,
)
from tinytown.runtime.proctree import ProcEntry, ProcessLedger
from tinytown.runtime.prompt import compose
from tinytown.runtime.recording import Change, Pause, Picked, RoundRecorder, _without
from tinytown.runtime.workspace_rounds import after_round, before_round, round_env
from tinytown.services import budgets
from tinytown.services.mcp.wiring import MCP_PROMPT_NOTE, mcp_config_for, mcp_env
from tinytown.store.records import GuardFailed, Staged
from tinytown.store.usage import town_usage

__all__ = ["Change", "Pause", "RoundRunner"]


class _BudgetReached(Exception):
    """A budget is reached as a round begins (``which``: the phrase for the reason)."""

    def __init__(self, which: str) -> None:
        super().__init__(which)
        self.which = which


class RoundRunner(RoundRecorder):
    """The rounds of one agent actor (the actor's base class: it owns the loop)."""

    @property
    def _ledger(self) -> ProcessLedger:
        return ProcessLedger(self.ctx.store)

    # -- one round ---------------------------------------------------------------------

    async def _round_body(self, held: Held) -> tuple[Held, Agent]:
        """Run the round over ``held``; return what stays held and the settled agent.
        Cancelled (kill, shutdown), the process group is stopped and the messages stay
        in flight."""
        while True:
            begun = await self._begin(held)
            if begun is not None:
                break
        picked, agent, done = begun
        if done is not None:  # no round: every assignment was stale, or a budget reached
            return _without(held, done), agent
        marker = picked.marker
        tasks = [task for _, _, task in picked.tasks]
        current = tasks[0].id if tasks else None
        round_no = agent.rounds_completed + 1
        names = await self._sender_names([*picked.requests, *picked.notes])
        prompt = compose(
            agent,
            self.ctx.town.name,
            round_no,
            tasks,
            [m for _, m in picked.requests],
            [m for _, m in picked.notes],
            names,
            await self._parent_results(agent),
            tools_note=MCP_PROMPT_NOTE if self._mcp_wired() else None,
        )
        # Before the CLI runs / after it ran, before recording: the workspace's commits.
        before = await before_round(self.ctx, agent)
        result = await self._run_cli(agent, prompt, current or "", round_no, marker)
        await after_round(self.ctx, agent, before, [t.id for t in tasks])
        return await self._record(held, picked, round_no, result)

    async def _begin(self, held: Held) -> tuple[Picked, Agent, Held | None] | None:
        """The round's first write, one atomic step: the agent ``working`` on its first
        task, and every task picked started (staged on the records as read, guarded).
        Returns (picked, the working agent, None) when the round begins, (picked, the
        settled agent, the messages acknowledged) when it does not (all stale, or a
        budget reached: the tasks are left as they were), None when a task moved
        meanwhile (pick again: the records are then read fresh)."""
        picked = await self._pick(held)
        if not picked.tasks and not picked.requests:  # every assignment was stale
            done = picked.stale + picked.notes
            return picked, await self._settle(done, counted=False), done
        tasks = [task for _, _, task in picked.tasks]
        limits = self._limits(None)
        over = budgets.reached(
            budgets.Limits(task=limits.task),
            agent=Usage(),
            town=Usage(),
            tasks=[(t.id, t.usage) for t in tasks],
        )
        current = tasks[0].id if tasks else None
        town = await town_usage(self.ctx.store) if limits.town is not None else Usage()

        def begin(a: Agent) -> Agent:
            # The budgets are decided on the record this write replaces (a compare-and-set:
            # fresh), whatever the gate saw before.
            reached = over or budgets.reached(self._limits(a), agent=a.usage, town=town)
            if reached:
                raise _BudgetReached(reached)
            return round_state(a, current)

        staged = picked.staged
        # The round's process ledger entry (its marker: the next `tt run` kills what a
        # crash left of it) rides in the same write, before the CLI starts.
        picked.marker = process_guard().new_marker()
        recorded = self._ledger.record_op(self.id, ProcEntry.before_start(picked.marker))
        try:
            agent = await self._change(
                begin,
                "round",
                [*(op for st in staged for op in st.ops), recorded],
                [st.guard for st in staged],
            )
        except GuardFailed:
            return None  # a task changed since it was read: nothing written, pick again
        except _BudgetReached as exc:  # a task or the agent spent its budget: not run
            pause = Pause(f"budget: {exc.which}", "budget", budgets.advice(exc.which, self.name))
            done = picked.stale
            return picked, await self._settle(done, counted=False, pause=pause), done
        return picked, agent, None

    async def _pick(self, held: Held) -> Picked:
        """Stage the start of up to ``runtime.tasks_per_round`` actionable messages, in
        order (stale assignments do not count); every note held rides along."""
        limit = int(self.ctx.setting("runtime.tasks_per_round"))
        picked = Picked()
        for raw, msg in held:
            taken = len(picked.tasks) + len(picked.requests)
            if msg.type is MessageType.TASK_ASSIGN:
                task_id = msg.body.task_id  # type: ignore[union-attr]
                if any(task.id == task_id for _, _, task in picked.tasks):
                    # The same task assigned twice (reassigned and back): one start, one
                    # finish; the other assignment is done with the round.
                    picked.stale.append((raw, msg))
                    continue
                if taken >= limit:
                    continue
                staged = await self._stage_start(task_id)
                if staged:
                    picked.tasks.append((raw, msg, staged.record))
                    picked.staged.append(staged)
                else:
                    picked.stale.append((raw, msg))
            elif msg.actionable:
                if taken < limit:
                    picked.requests.append((raw, msg))
            else:
                picked.notes.append((raw, msg))
        return picked

    async def _stage_start(self, task_id: str) -> Staged[Task] | None:
        """An assigned task's start, staged; None when it is stale (finished, reassigned),
        gone, or its record is corrupt (reported: it can never be started). Any other
        error (an outage) propagates: the actor restarts and the assignment, still in
        flight, is handled again."""
        try:
            return await self.ctx.town.tasks.stage_start(task_id, self.id)
        except (InvalidTransitionError, NotFoundError):
            return None
        except MalformedRecordError as exc:
            self.ctx.report(f"{self.name}: skipped the assignment of a corrupt task: {exc}")
            event = self.ctx.store.event_op(
                "malformed", agent=self.id, task=task_id, text=f"corrupt task: {exc}"[:300]
            )
            await self.ctx.store.run_ops([event])
            return None

    async def _sender_names(self, held: Held) -> dict[str, str]:
        """The names of the agents that sent ``held`` (the prompt names its senders), read
        only when there are such senders: a round on a task from the supervisor reads
        nothing, and no round reads the whole town's names. Cancellable."""
        senders = sorted({m.sender for _, m in held if m.sender != SUPERVISOR_ID})
        if not senders:
            return {}
        keys = [self.ctx.town.keys.agent(s) for s in senders]
        return {a.id: a.name for a in await self.ctx.store.mget(Agent, keys)}

    def _mcp_wired(self) -> bool:
        """Whether this round's CLI gets the town's MCP server (``mcp.agents``, and a CLI
        that takes MCP servers)."""
        return bool(self.spec.mcp) and bool(self.ctx.setting("mcp.agents"))

    async def _run_cli(
        self, agent: Agent, prompt: str, task_id: str, round_no: int, marker: str
    ) -> RoundResult:
        town, spec = self.ctx.town, self.spec
        env = dict(self.ctx.agent_env)
        env.update({"TT_AGENT_ID": self.id, "TT_AGENT_NAME": agent.name, "TT_TASK_ID": task_id})
        env.update(round_env(self.ctx, agent))  # its worktree and branch, if it has one
        resume = agent.spawn_mode is SpawnMode.RESUMED
        # The town's MCP server, for a CLI that takes one (issue 13): `tt mcp` as this agent.
        mcp_config = None
        if self._mcp_wired():
            mcp_config = mcp_config_for(town.root, agent, env)
            env.update(mcp_env(spec.format, mcp_config))
        argv = spec.round_argv(agent.session_id if resume else None, resume, mcp_config)
        if not spec.prompt_on_stdin:
            argv, prompt = [*argv, prompt], ""
        tail, text = int(self.ctx.setting("runtime.log_tail_bytes")), spec.format == "text"
        runner = functools.partial(
            run_cli,
            argv,
            prompt=prompt,
            cwd=self.ctx.workdir(agent),
            env=env,
            log_path=town.root / ".tt" / "logs" / f"{agent.name}.log",
            timeout=self.ctx.setting("runtime.round_timeout") or None,
            kill_grace=self.ctx.setting("runtime.kill_grace"),
            # A structured CLI's result is read whole: all of stdout (bounded), and enough
            # of stderr for an error object printed there (gemini).
            tail_bytes=tail if text else max(tail, STRUCTURED_STDERR_BYTES),
            stdout_bytes=None if text else STRUCTURED_STDOUT_BYTES,
            watch=spec.early_stop,
            log_max_bytes=int(self.ctx.setting("runtime.log_max_bytes")),
            log_keep=int(self.ctx.setting("runtime.log_keep")),
            marker=marker,  # recorded in the process ledger by the round's first write
            round_no=round_no,
        )
        box: list[RoundResult] = []

        async def go(task_status: trio.TaskStatus[RunningProcess]) -> None:
            box.append(await runner(task_status=task_status))

        async with trio.open_nursery() as nursery:
            self.proc = await nursery.start(go)
            if self.life.state is Life.PAUSED_ROUND:
                self.proc.suspend()
        return box[0]

    async def _parent_results(self, agent: Agent) -> list[Task]:
        if not agent.parent_agent_id or agent.spawn_mode.value != "forkedcontext":
            return []
        done = await self.ctx.town.tasks.list(
            agent=agent.parent_agent_id, state=TaskState.COMPLETED
        )
        return done[-5:]
