"""Agents: registering, finding, and controlling them (with or without a running town)."""

from __future__ import annotations

import builtins
import os
import shutil
from collections.abc import Sequence

import attrs
import trio

from tinytown.errors import (
    AlreadyExistsError,
    AmbiguousReferenceError,
    CliNotFoundError,
    InvalidTransitionError,
    MalformedRecordError,
    NotFoundError,
    TimeoutExpiredError,
)
from tinytown.model import (
    Agent,
    AgentState,
    Message,
    SpawnMode,
    Task,
    TaskState,
    loads,
    new_id,
    now,
)
from tinytown.model.ids import SUPERVISOR_ALIASES, SUPERVISOR_ID, is_uuid
from tinytown.model.nicknames import nickname_for
from tinytown.services import control
from tinytown.services.config import TownConfig
from tinytown.store.client import Connection
from tinytown.store.records import DELETE, Conflict, GuardFailed, Op, Store
from tinytown.store.scripts import RETURN_INFLIGHT


@attrs.frozen
class ControlOutcome:
    """What a control verb did: the agent after it, and whether a runtime applied it."""

    agent: Agent
    live: bool
    detail: str = ""


class AgentService:
    def __init__(self, store: Store, config: TownConfig) -> None:
        self.store = store
        self.config = config
        self.keys = store.keys

    # -- reading ---------------------------------------------------------------------

    async def list(self) -> builtins.list[Agent]:
        """Every agent record, oldest first (malformed ones noted in store.warnings)."""
        index: dict[str, str] = _pairs(await self.store.redis.execute("HGETALL", self.keys.agents))
        agents = await self.store.mget(Agent, [self.keys.agent(i) for i in index.values()])
        return sorted(agents, key=lambda a: a.created_at)

    async def get(self, agent_id: str) -> Agent:
        agent = await self.store.get(Agent, self.keys.agent(agent_id))
        if agent is None:
            raise NotFoundError(f"No agent with id {agent_id}.")
        return agent

    async def resolve_id(self, ref: str, *, allow_supervisor: bool = True) -> str:
        """An agent id from a name, nickname, UUID or unique UUID prefix (or supervisor)."""
        if ref.strip().lower() in SUPERVISOR_ALIASES or ref == SUPERVISOR_ID:
            if not allow_supervisor:
                raise InvalidTransitionError(f"{ref!r} is the supervisor, not a worker agent.")
            return SUPERVISOR_ID
        quick = await self._quick_id(ref)
        if quick and await self.store.redis.execute("EXISTS", self.keys.agent(quick)):
            return quick
        return (await self.resolve(ref)).id

    async def _quick_id(self, ref: str) -> str | None:
        """The id for an exact name or a full UUID in one round trip (the common cases),
        without listing every agent."""
        ref = ref.strip()
        if is_uuid(ref.lower()):
            return ref.lower()
        return await self.store.redis.execute("HGET", self.keys.agents, ref)

    async def resolve(self, ref: str) -> Agent:
        """The agent ``ref`` names; raises NotFoundError or AmbiguousReferenceError."""
        ref = ref.strip()
        if ref.lower() in SUPERVISOR_ALIASES:
            raise NotFoundError(f"{ref!r} is the supervisor; it has no agent record.")
        quick = await self._quick_id(ref)
        if quick:
            agent = await self.store.get(Agent, self.keys.agent(quick))
            if agent is not None:
                return agent
        agents = await self.list()
        for match in (
            [a for a in agents if a.name == ref],
            [a for a in agents if a.id == ref.lower()],
            [a for a in agents if a.name.lower() == ref.lower()],
            [a for a in agents if a.nickname.lower() == ref.lower()],
            [a for a in agents if _is_prefix(ref) and a.id.startswith(ref.lower())],
        ):
            if len(match) == 1:
                return match[0]
            if len(match) > 1:
                names = ", ".join(f"{a.name} ({a.short_id})" for a in match)
                raise AmbiguousReferenceError(f"Agent reference {ref!r} is ambiguous: {names}.")
        raise NotFoundError(f"No agent named {ref!r} in town {self.keys.town}.")

    # -- registering -----------------------------------------------------------------

    async def spawn(
        self,
        name: str,
        cli: str | None = None,
        *,
        role: str | None = None,
        nickname: str | None = None,
        parent: str | None = None,
        mode: SpawnMode | str = SpawnMode.FRESH,
        max_rounds: int | None = None,
        scope: str | None = None,
    ) -> Agent:
        """Register a new agent (state ``starting``); a running town starts it at once."""
        from tinytown.model import validate_agent_name

        validate_agent_name(name)
        mode = SpawnMode.parse(mode) if isinstance(mode, str) else mode
        cli_name, argv = self.config.resolve_cli(cli)
        check_cli_installed(argv, cli_name)
        if max_rounds is not None and max_rounds < 1:
            raise InvalidTransitionError("--max-rounds must be at least 1.")
        parent_id = (await self.resolve(parent)).id if parent else None
        if mode is SpawnMode.FORKED_CONTEXT and parent_id is None:
            raise InvalidTransitionError("Spawn mode forkedcontext needs --parent.")
        agent_id = new_id()
        agent = Agent(
            id=agent_id,
            name=name,
            nickname=nickname or nickname_for(agent_id),
            cli=cli_name,
            role_id=role,
            parent_agent_id=parent_id,
            spawn_mode=mode,
            current_scope=scope,
            max_rounds=max_rounds,
        )
        from tinytown.model import dumps

        ops: builtins.list[Op] = [
            ["HSET", self.keys.agents, name, agent_id],
            self.store.event_op("spawn", agent=agent_id, text=f"spawned {name} ({cli_name})"),
        ]
        try:
            await self.store.apply(
                self.keys.agent(agent_id),
                expected=None,
                new=dumps(agent),
                ops=ops,
                guards=[(["HEXISTS", self.keys.agents, name], 0)],
            )
        except GuardFailed:
            raise AlreadyExistsError(f"An agent named {name!r} already exists.") from None
        if await control.runtime_holder(self.store):
            await control.notify(self.store, "reconcile", agent_id=agent_id)
        return agent

    # -- control verbs ---------------------------------------------------------------

    async def interrupt(self, ref: str) -> ControlOutcome:
        """Pause the agent now: its running CLI is suspended (SIGSTOP), no new messages."""
        return await self._control(ref, "interrupt")

    async def resume(self, ref: str) -> ControlOutcome:
        """Continue a paused agent (SIGCONT to its CLI; it takes messages again)."""
        return await self._control(ref, "resume")

    async def close(self, ref: str) -> ControlOutcome:
        """Drain: no new messages, the current round finishes, then ``cold``."""
        return await self._control(ref, "close")

    async def kill(self, ref: str) -> ControlOutcome:
        """Stop now: the CLI's process group is terminated, its work goes back to the queue."""
        return await self._control(ref, "kill")

    async def restart(self, ref: str) -> ControlOutcome:
        """Bring a terminal agent back (same id); refused while it is active."""
        return await self._control(ref, "restart")

    async def _control(self, ref: str, verb: str) -> ControlOutcome:
        agent = await self.resolve(ref)
        _check_verb(agent, verb)
        if await control.runtime_holder(self.store):
            reply = await control.request(self.store, verb, agent_id=agent.id)
            if not reply.get("ok"):
                raise InvalidTransitionError(str(reply.get("error") or f"{verb} failed."))
            return ControlOutcome(await self.get(agent.id), True, str(reply.get("detail") or ""))
        return ControlOutcome(await self.apply_offline(agent.id, verb), False)

    async def apply_offline(self, agent_id: str, verb: str) -> Agent:
        """Record ``verb``'s effect when no actor runs for the agent."""
        target_verb = {
            "interrupt": "interrupt",
            "resume": "resume_idle",
            "close": "cool",  # nothing is running, so draining ends at once
            "kill": "kill",
            "restart": "restart",
        }[verb]

        def change(agent: Agent) -> tuple[Agent, builtins.list[Op]]:
            _check_verb(agent, verb)
            extra: dict[str, object] = {}
            if verb == "restart":
                extra = {"rounds_completed": 0, "state_reason": None, "last_heartbeat": now()}
            new = agent.transition(target_verb, **extra)
            return new, [self.state_event(agent, new, verb)]

        agent = await self.store.update(
            Agent, self.keys.agent(agent_id), change, missing=lambda: _gone(agent_id)
        )
        if verb == "kill":
            await self.release_work(agent)
        return agent

    async def release_work(self, agent: Agent) -> int:
        """Give a stopped agent's unfinished work back: in-flight messages to its inbox,
        its unfinished tasks to the backlog. Returns the number of tasks requeued."""
        await self.store.redis.run_script(
            RETURN_INFLIGHT, [self.keys.inflight(agent.id), self.keys.inbox(agent.id)], []
        )
        from tinytown.services.tasks import TaskService

        return await TaskService(self.store, self).requeue_agent_tasks(agent.id)

    def state_event(self, old: Agent, new: Agent, verb: str) -> Op:
        return self.store.event_op(
            "state",
            agent=new.id,
            name=new.name,
            verb=verb,
            state=new.state.value,
            text=f"{new.name}: {old.state.value} -> {new.state.value} ({verb})",
        )

    # -- waiting ---------------------------------------------------------------------

    async def wait(self, ref: str, *, timeout: float | None = None, idle: bool = False) -> Agent:
        """Block until the agent reaches a terminal state (or, with ``idle``, is idle with
        an empty inbox). Wakes on the event stream, never polls.

        Raises TimeoutExpiredError after ``timeout`` seconds. Cancellable.
        """
        agent = await self.resolve(ref)
        with trio.move_on_after(timeout if timeout is not None else float("inf")) as scope:
            async with self.store.redis.dedicated() as conn:
                last = await _last_event_id(conn, self.keys.events)
                while True:
                    agent = await self.get(agent.id)
                    if await self._reached(agent, idle):
                        return agent
                    # BLOCK 0 would hold the connection forever; a long block is the same.
                    reply = await conn.execute(
                        "XREAD", "BLOCK", 60_000, "STREAMS", self.keys.events, last
                    )
                    if reply:
                        last = reply[0][1][-1][0]
        assert scope.cancelled_caught
        raise TimeoutExpiredError(
            f"Agent {agent.name} is still {agent.state.value} after {timeout:g} s."
        )

    async def _reached(self, agent: Agent, idle: bool) -> bool:
        if agent.state.terminal:
            return True
        if not idle or agent.state is not AgentState.IDLE:
            return False
        queued, inflight = await self.store.redis.pipeline(
            [["LLEN", self.keys.inbox(agent.id)], ["LRANGE", self.keys.inflight(agent.id), 0, -1]]
        )
        # Notes (informational, replies) wait in flight for the next round: they do not
        # make an idle agent busy. Anything actionable there means a round is starting.
        return queued == 0 and not any(_actionable(raw) for raw in inflight)

    # -- housekeeping ----------------------------------------------------------------

    async def prune(self, *, everything: bool = False) -> builtins.list[Agent]:
        """Remove terminal agents (or, with ``everything`` and no running town, all agents)
        and their keys. Nothing they hold is destroyed: their unfinished tasks go to the
        backlog and their other messages to the supervisor's inbox (as ``tt reclaim
        --to-backlog`` does) before the records go. Tasks are never removed."""
        from tinytown.model import dumps
        from tinytown.services.recovery import RecoveryService
        from tinytown.services.tasks import TaskService

        running = await control.runtime_holder(self.store)
        recovery = RecoveryService(self.store, self, TaskService(self.store, self))
        removed = []
        for agent in await self.list():
            if not (agent.state.terminal or (everything and not running)):
                continue
            if not agent.state.terminal:
                agent = await self.apply_offline(agent.id, "kill")
            await recovery.reclaim(from_agent=agent.id)
            ops: builtins.list[Op] = [
                ["HDEL", self.keys.agents, agent.name],
                ["DEL", self.keys.inbox(agent.id), self.keys.inflight(agent.id)],
                self.store.event_op("prune", agent=agent.id, text=f"pruned {agent.name}"),
            ]
            try:
                await self.store.apply(
                    self.keys.agent(agent.id),
                    expected=dumps(agent),
                    new=DELETE,
                    ops=ops,
                    # a message that arrived meanwhile keeps the agent for the next prune
                    guards=[
                        (["LLEN", self.keys.inbox(agent.id)], 0),
                        (["LLEN", self.keys.inflight(agent.id)], 0),
                    ],
                )
            except (Conflict, GuardFailed):
                continue
            removed.append(agent)
        return removed

    async def inbox_len(self, agent_id: str) -> int:
        counts = await self.store.redis.pipeline(
            [["LLEN", self.keys.inbox(agent_id)], ["LLEN", self.keys.inflight(agent_id)]]
        )
        return int(sum(counts))

    async def tasks_of(self, agent_id: str, states: Sequence[TaskState]) -> builtins.list[Task]:
        from tinytown.services.tasks import TaskService

        tasks = await TaskService(self.store, self).list(agent=agent_id)
        return [t for t in tasks if t.state in states]


def check_cli_installed(argv: list[str], cli_name: str) -> None:
    """Raise CliNotFoundError unless ``argv[0]`` can be executed."""
    program = argv[0]
    found = os.access(program, os.X_OK) if os.sep in program else shutil.which(program) is not None
    if not found:
        raise CliNotFoundError(
            f"CLI {cli_name!r} needs {program!r}, which is not installed or not on PATH."
        )


def _check_verb(agent: Agent, verb: str) -> None:
    state = agent.state
    if verb == "restart":
        if not state.terminal:
            raise InvalidTransitionError(
                f"Agent {agent.name} is {state.value}; only a stopped, cold or error agent"
                " can be restarted (kill it first)."
            )
        return
    if state.terminal:
        raise InvalidTransitionError(f"Agent {agent.name} is already {state.value}.")
    if verb == "resume" and state is not AgentState.PAUSED:
        raise InvalidTransitionError(f"Agent {agent.name} is {state.value}, not paused.")
    if verb == "close" and state is AgentState.DRAINING:
        raise InvalidTransitionError(f"Agent {agent.name} is already draining.")
    if verb == "interrupt" and state in (AgentState.PAUSED, AgentState.DRAINING):
        raise InvalidTransitionError(f"Agent {agent.name} is {state.value}; cannot interrupt it.")


def _actionable(raw: str) -> bool:
    try:
        return loads(Message, raw).actionable
    except MalformedRecordError:
        return False


def _gone(agent_id: str) -> NotFoundError:
    return NotFoundError(f"Agent {agent_id} no longer exists.")


def _is_prefix(ref: str) -> bool:
    return len(ref) >= 4 and all(c in "0123456789abcdef-" for c in ref.lower())


def _pairs(flat: list[str] | dict) -> dict[str, str]:
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2], strict=True))


async def _last_event_id(conn: Connection, stream: str) -> str:
    reply = await conn.execute("XREVRANGE", stream, "+", "-", "COUNT", 1)
    return reply[0][0] if reply else "0-0"
