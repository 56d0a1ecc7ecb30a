"""The agent actor: takes messages from its inbox, runs one CLI round per batch.

Delivery is at-least-once. A message moves atomically from the inbox to the agent's
in-flight list and is removed from there (acknowledged) only after its effect is
recorded. Whatever is still in flight when an actor starts (after a crash, a shutdown,
a restart) is handled again; handlers are idempotent (a task already finished, or no
longer assigned to this agent, is skipped).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from tinytown.errors import CliNotFoundError, InvalidTransitionError
from tinytown.model import (
    Agent,
    AgentState,
    Informational,
    Message,
    MessageType,
    Task,
    TaskState,
)
from tinytown.runtime.mailbox import TAKE_BATCH, Held, Mailbox
from tinytown.runtime.process import RoundResult, RunningProcess, run_cli
from tinytown.runtime.prompt import compose
from tinytown.services.agents import check_cli_installed
from tinytown.store.records import Op

if TYPE_CHECKING:
    from tinytown.runtime.town_runtime import Runtime


class AgentActor:
    def __init__(self, rt: Runtime, agent_id: str) -> None:
        self.rt = rt
        self.id = agent_id
        self.keys = rt.town.keys
        self.name = agent_id[:8]
        self.done = trio.Event()
        self.mailbox = Mailbox(rt, agent_id, lambda: self.name)
        self.reset()

    def reset(self) -> None:
        """Fresh per-run state (the supervisor calls this before a restart)."""
        self.cancel_scope = trio.CancelScope()
        self.paused = False
        self.draining = False
        self.stopping = False  # the town shuts down: finish the round, keep the record live
        self.killed = False
        self.in_round = False
        self.proc: RunningProcess | None = None
        self.idle_since: float | None = None  # waiting with nothing to do (for dispatch)
        self.failed_rounds = 0  # consecutive; a failing CLI backs off instead of spinning

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Run until the agent ends (cold, stopped, error) or is cancelled.

        Cancelled by :meth:`kill`: the CLI's process group is terminated and reaped, the
        agent is recorded ``stopped`` and its work goes back to the queue. Cancelled by a
        town shutdown: in-flight messages stay in flight for the next ``tt run``.
        """
        with self.cancel_scope:
            await self._main()
        if self.killed:
            with trio.CancelScope(shield=True):
                agent = await self._change(lambda a: a.transition("kill"), "kill")
                await self.rt.town.agents.release_work(agent)

    async def _main(self) -> None:
        agent = await self.rt.town.agents.get(self.id)
        self.name = agent.name
        if agent.state.terminal:
            return
        cli_name, self.argv = self.rt.town.config.resolve_cli(agent.cli)
        try:
            check_cli_installed(self.argv, cli_name)
        except CliNotFoundError as exc:
            reason = str(exc)
            await self._change(lambda a: a.transition("error", state_reason=reason), "error")
            return
        if agent.state is AgentState.DRAINING:
            await self._change(lambda a: a.transition("cool"), "cool")
            return
        self.paused = agent.state is AgentState.PAUSED
        held = await self.mailbox.recover()
        if not self.paused:
            await self._change(
                lambda a: a.transition(
                    "ready", current_task=None, started_at=a.started_at or _now()
                ),
                "ready",
            )
        while not (self.draining or self.stopping):
            token = self.rt.hub.token(self.id)
            if self.paused:
                await self.rt.hub.wait(self.id, token)
                continue
            taken = await self.mailbox.take()
            held += taken
            held = await self.mailbox.answer_runtime_messages(held)
            if any(m.actionable for _, m in held):
                self.idle_since = None
                await self._backoff_after_failures()
                held, settled = await self._round(held)
                if (
                    settled.max_rounds is not None
                    and settled.rounds_completed >= settled.max_rounds
                ):
                    await self._change(lambda a: a.transition("cool"), "max rounds")
                    return
                continue
            if len(taken) >= TAKE_BATCH:
                continue  # more may be queued: take again before sleeping
            if self.idle_since is None:
                self.idle_since = trio.current_time()
                self.rt.hub.notify("backlog")  # an idle agent may take backlog work
            await self.rt.hub.wait(self.id, token)
        if self.draining:
            await self._change(lambda a: a.transition("cool"), "closed")

    # -- control (called by the supervisor) -------------------------------------------

    async def interrupt(self) -> Agent:
        self.paused = True
        if self.proc:
            self.proc.suspend()
        agent = await self._change(lambda a: a.transition("interrupt"), "interrupt")
        self.rt.hub.notify(self.id)
        return agent

    async def resume(self) -> Agent:
        self.paused = False
        if self.proc:
            self.proc.resume()
        verb = "resume_working" if self.in_round else "resume_idle"
        agent = await self._change(lambda a: a.transition(verb), "resume")
        self.rt.hub.notify(self.id)
        return agent

    async def close(self) -> Agent:
        self.draining = True
        agent = await self._change(lambda a: a.transition("close"), "close")
        if self.paused:  # the current round must be able to finish
            self.paused = False
            if self.proc:
                self.proc.resume()
        self.rt.hub.notify(self.id)
        return agent

    async def kill(self) -> None:
        """Cancel the actor now and wait until its process group is gone."""
        self.killed = True
        self.cancel_scope.cancel()
        await self.done.wait()

    def stop(self) -> None:
        """Town shutdown: take no more messages; the current round may finish."""
        self.stopping = True
        if self.proc and self.paused:
            pass  # a paused round stays paused; the shutdown grace will cancel it
        self.rt.hub.notify(self.id)

    # -- rounds ----------------------------------------------------------------------

    async def _round(self, held: Held) -> tuple[Held, Agent]:
        """One CLI run for every held message; returns what is still held (nothing) and
        the agent as settled after the round."""
        town = self.rt.town
        tasks: list[Task] = []
        requests: list[Message] = []
        notes: list[Message] = []
        for _, msg in held:
            if msg.type is MessageType.TASK_ASSIGN:
                task = await self._start_task(msg.body.task_id)  # type: ignore[union-attr]
                if task:
                    tasks.append(task)
            elif msg.actionable:
                requests.append(msg)
            else:
                notes.append(msg)
        if not tasks and not requests:  # every assignment was stale: just acknowledge
            return [], await self._finish_round(held, counted=False)
        self.in_round = True
        try:
            agent = await self._change(
                lambda a: a.transition(
                    "interrupt" if self.paused else "work",
                    current_task=tasks[0].id if tasks else None,
                ),
                "round",
            )
            index = await self.rt.redis.execute("HGETALL", self.keys.agents)
            names = dict(zip(index[1::2], index[::2], strict=True))  # id -> name
            parent_results = await self._parent_results(agent)
            prompt = compose(
                agent,
                town.name,
                agent.rounds_completed + 1,
                tasks,
                requests,
                notes,
                names,
                parent_results,
            )
            result = await self._run_cli(agent, prompt, tasks[0].id if tasks else "")
            replies, completed = await self._record(result, tasks, requests)
        finally:
            self.in_round = False
            self.proc = None
        settled = await self._finish_round(
            held, counted=True, extra_ops=replies, completed=completed
        )
        return [], settled

    async def _backoff_after_failures(self) -> None:
        """After 3 failed rounds in a row, wait 1, 2, 4 ... 60 s before the next one."""
        if self.failed_rounds >= 3:
            delay = min(2.0 ** (self.failed_rounds - 3), 60.0)
            self.rt.report(f"{self.name}: {self.failed_rounds} failed rounds; waiting {delay:g} s")
            await trio.sleep(delay)

    async def _start_task(self, task_id: str) -> Task | None:
        try:
            return await self.rt.town.tasks.start(task_id, self.id)
        except (InvalidTransitionError, Exception) as exc:  # stale or gone: skip it
            if isinstance(exc, trio.Cancelled):
                raise
            return None

    async def _run_cli(self, agent: Agent, prompt: str, task_id: str) -> RoundResult:
        town = self.rt.town
        env = dict(self.rt.agent_env)
        env.update({"TT_AGENT_ID": self.id, "TT_AGENT_NAME": agent.name, "TT_TASK_ID": task_id})
        runner = functools.partial(
            run_cli,
            self.argv,
            prompt=prompt,
            cwd=self.rt.workdir(agent),
            env=env,
            log_path=town.root / ".tt" / "logs" / f"{agent.name}.log",
            timeout=float(town.config.setting("runtime.round_timeout")) or None,
            kill_grace=float(town.config.setting("runtime.kill_grace")),
            tail_bytes=int(town.config.setting("runtime.log_tail_bytes")),
        )
        box: list[RoundResult] = []

        async def go(task_status: trio.TaskStatus[RunningProcess]) -> None:
            box.append(await runner(task_status=task_status))

        async with trio.open_nursery() as nursery:
            self.proc = await nursery.start(go)
            if self.paused:
                self.proc.suspend()
        return box[0]

    async def _record(
        self, result: RoundResult, tasks: list[Task], requests: list[Message]
    ) -> tuple[list[Op], int]:
        """Record the round's outcome on its tasks; return the replies to its requests (to
        be sent with the acknowledgement) and how many tasks it completed."""
        town = self.rt.town
        ok = result.returncode == 0 and not result.timed_out
        self.failed_rounds = 0 if ok else self.failed_rounds + 1
        if result.timed_out:
            detail = f"timed out; stderr: {result.stderr_tail.strip()}".strip()
        elif ok:
            detail = result.stdout_tail.strip() or "(no output)"
        else:
            tail = result.stderr_tail.strip() or result.stdout_tail.strip()
            detail = f"exit {result.returncode}: {tail}"
        completed = 0
        for task in tasks:
            try:
                await town.tasks.finish(task.id, "complete" if ok else "fail", detail, count=False)
                completed += ok
            except InvalidTransitionError:
                pass  # the CLI finished it itself (tt task complete/fail), and it counted
        ops: list[Op] = []
        for msg in requests:
            if msg.sender != self.id:
                summary = f"re: {msg.text[:80]} -> {'done' if ok else 'failed'}: {detail[-1000:]}"
                reply = Message.new(
                    self.id, msg.sender, Informational(summary), correlation_id=msg.id
                )
                ops += self.rt.store.deliver_ops(reply)
        return ops, completed

    async def _finish_round(
        self,
        held: Held,
        *,
        counted: bool,
        extra_ops: Sequence[Op] = (),
        completed: int = 0,
    ) -> Agent:
        """Acknowledge the round's messages, send its replies and settle the agent, in one
        atomic step."""
        acks: list[Op] = [["LREM", self.keys.inflight(self.id), "1", raw] for raw, _ in held]

        def change(a: Agent) -> tuple[Agent, list[Op]]:
            import attrs

            state = a.state
            if state is AgentState.WORKING:
                state = AgentState.IDLE
            new = attrs.evolve(
                a,
                state=state,
                current_task=None,
                rounds_completed=a.rounds_completed + (1 if counted else 0),
                tasks_completed=a.tasks_completed + completed,
            )
            ops = [*extra_ops, *acks]
            if state != a.state:
                ops.append(self.rt.town.agents.state_event(a, new, "round done"))
            return new, ops

        return await self.rt.store.update(
            Agent, self.keys.agent(self.id), change, missing=lambda: _gone(self.id)
        )

    async def _parent_results(self, agent: Agent) -> list[Task]:
        if not agent.parent_agent_id or agent.spawn_mode.value != "forkedcontext":
            return []
        done = await self.rt.town.tasks.list(agent=agent.parent_agent_id, state=TaskState.COMPLETED)
        return done[-5:]

    async def _change(self, fn: Callable[[Agent], Agent], verb: str) -> Agent:
        def change(a: Agent) -> tuple[Agent, list[Op]]:
            new = fn(a)
            return new, [
                self.rt.town.agents.state_event(a, new, verb)
            ] if new.state != a.state else []

        return await self.rt.store.update(
            Agent, self.keys.agent(self.id), change, missing=lambda: _gone(self.id)
        )


def _gone(agent_id: str) -> Exception:
    from tinytown.errors import NotFoundError

    return NotFoundError(f"Agent {agent_id} no longer exists.")


def _now() -> str:
    from tinytown.model import now

    return now()
