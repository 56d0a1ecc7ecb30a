"""Agents: registering, finding and reading them, and recording state changes.

Coordinating agents with their tasks (control verbs, giving work back, pruning) is
:mod:`tinytown.services.lifecycle`, which sits above this module and the task service.
"""

from __future__ import annotations

import builtins
import itertools
import math
import re
from collections.abc import Callable

import attrs

from tinytown.errors import (
    AlreadyExistsError,
    AmbiguousReferenceError,
    InvalidInputError,
    InvalidTransitionError,
    NotFoundError,
    ReplyLostError,
)
from tinytown.model import (
    Agent,
    AgentState,
    Budget,
    SpawnMode,
    dumps,
    new_id,
    now,
    validate_agent_name,
)
from tinytown.model.ids import SUPERVISOR_ALIASES, SUPERVISOR_ID, is_uuid
from tinytown.model.nicknames import nickname_candidates, nickname_for
from tinytown.services import control, legacy
from tinytown.services.agentcli import safety_notice
from tinytown.services.config import TownConfig
from tinytown.services.text import check_text
from tinytown.services.waiting import wait_for_agent
from tinytown.store import indexes
from tinytown.store.records import GuardFailed, Op, Store

#: Tries to reserve a nickname when concurrent spawns keep taking the chosen one.
NICKNAME_ATTEMPTS = 50
#: What a CLI session id may look like (claude: a UUID; codex: a thread id).
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
#: Names of the list tried (from the agent's own on) before numbered ones (``Ruth2``).
NICKNAME_SCAN = 32


class AgentService:
    """The agent records of one town. Cancellation: every method is cancellable; each
    change is one atomic script (done entirely or not at all)."""

    def __init__(self, store: Store, config: TownConfig) -> None:
        self.store = store
        self.config = config
        self.keys = store.keys
        #: Whether :meth:`list` also shows Rust hash-format agents (read-only commands).
        self.show_legacy = False

    # -- reading ---------------------------------------------------------------------

    async def list(self, *, legacy_records: bool | None = None) -> builtins.list[Agent]:
        """Every agent record, oldest first (malformed ones noted in store.warnings).

        ``legacy_records``: also Rust Tinytown's hash-format agents (read-only, noted as
        legacy in store.warnings); default :attr:`show_legacy` (set for read-only
        commands; never for the runtime, which cannot host them, nor for commands that
        change what they list)."""
        index = await indexes.agent_index(self.store)
        agents = await self.store.mget(Agent, [self.keys.agent(i) for i in index.values()])
        if legacy_records if legacy_records is not None else self.show_legacy:
            agents += await legacy.hash_agents(self.store, self.config.clis())
        return sorted(agents, key=lambda a: a.created_at)

    async def _read(self, agent_id: str) -> Agent | None:
        """Our JSON record, else a Rust hash-format one, else None."""
        try:
            return await self.store.get(Agent, self.keys.agent(agent_id))
        except Exception as exc:
            if not legacy.is_wrongtype(exc):
                raise
            return await legacy.hash_agent(self.store, agent_id, self.config.clis())

    async def get(self, agent_id: str) -> Agent:
        agent = await self._read(agent_id)
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
        if quick and await indexes.agent_exists(self.store, quick):
            return quick
        return (await self.resolve(ref)).id

    async def _quick_id(self, ref: str) -> str | None:
        """The id for an exact name or a full UUID in one round trip (the common cases),
        without listing every agent."""
        ref = ref.strip()
        if is_uuid(ref.lower()):
            return ref.lower()
        return await indexes.agent_id_for_name(self.store, ref)

    async def resolve(self, ref: str) -> Agent:
        """The agent ``ref`` names; raises NotFoundError or AmbiguousReferenceError."""
        ref = ref.strip()
        if ref.lower() in SUPERVISOR_ALIASES:
            raise NotFoundError(f"{ref!r} is the supervisor; it has no agent record.")
        quick = await self._quick_id(ref)
        if quick:
            agent = await self._read(quick)
            if agent is not None:
                return agent
        agents = await self.list(legacy_records=True)
        for match in (
            [a for a in agents if a.name == ref],
            [a for a in agents if a.id == ref.lower()],
            [a for a in agents if a.name.lower() == ref.lower()],
            [a for a in agents if a.nickname.lower() == ref.lower()],
            [a for a in agents if legacy.matches_label(a, ref)],
            [a for a in agents if _is_prefix(ref) and a.id.startswith(ref.lower())],
        ):
            if len(match) == 1:
                return match[0]
            if len(match) > 1:
                names = ", ".join(f"{a.name} ({a.short_id})" for a in match)
                raise AmbiguousReferenceError(f"Agent reference {ref!r} is ambiguous: {names}.")
        raise NotFoundError(f"No agent named {ref!r} in town {self.keys.town}.")

    async def inbox_len(self, agent_id: str) -> int:
        """Queued plus in-flight messages of one agent."""
        counts = await indexes.queue_counts(self.store, [agent_id])
        return sum(counts[agent_id])

    async def wait(self, ref: str, *, timeout: float | None = None, idle: bool = False) -> Agent:
        """Block until the agent reaches a terminal state (or, with ``idle``, is idle with
        an empty inbox); see :func:`~tinytown.services.waiting.wait_for_agent`.

        Raises InvalidInputError (negative timeout), TimeoutExpiredError. Cancellable.
        """
        return await wait_for_agent(self.store, await self.resolve(ref), timeout=timeout, idle=idle)

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
        budget: Budget | None = None,
        session_id: str | None = None,
        worktree: bool | None = None,
    ) -> Agent:
        """Register a new agent (state ``starting``); a running town starts it at once.

        ``budget`` is its own spending limit (besides the town's ``[budget]``);
        ``session_id`` a CLI session to continue (``tt spawn --resume-session``): the
        agent is ``resumed`` and its first round continues that session. Raises
        InvalidNameError, InvalidInputError, InvalidTransitionError, AlreadyExistsError,
        CliNotFoundError; nothing is written then. Cancellable: once the write was sent, a
        cancelled spawn may or may not have registered the agent."""
        validate_agent_name(name)
        for what, text in (("role", role), ("nickname", nickname), ("scope", scope), ("cli", cli)):
            if text is not None:
                check_text(text, f"the agent's {what}")
        mode = SpawnMode.parse(mode) if isinstance(mode, str) else mode
        if session_id is not None:
            session_id = check_session_id(session_id)
            if mode is SpawnMode.FORKED_CONTEXT:
                raise InvalidInputError(
                    "A resumed session continues its own context; it cannot also be forkedcontext."
                )
            mode = SpawnMode.RESUMED
        if budget is not None:
            check_budget(budget)
            if budget.usd is None and budget.tokens is None:
                budget = None
        # Spawning's own modules (git worktrees, PATH look-ups) are imported here: every
        # command imports this module, few spawn.
        from tinytown.services.executables import agent_path, check_cli_installed
        from tinytown.services.workspace import worktrees as workspaces

        cli_name, argv = self.config.resolve_cli(cli)
        # The rules the child's exec will use: the agents' PATH, the town root as cwd.
        check_cli_installed(
            argv, cli_name, cwd=self.config.root, env={"PATH": agent_path()}, remember=True
        )
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
            budget=budget,
            session_id=session_id,
        )
        if workspaces.wants_worktree(self.config, worktree):  # its own git worktree (issue 12)
            if await indexes.agent_id_for_name(self.store, name):
                raise AlreadyExistsError(f"An agent named {name!r} already exists.")
            rel, branch = await workspaces.provide(self.config, name)
            agent = attrs.evolve(agent, worktree=rel, branch=branch)
        await self._index_old_nicknames()
        for _attempt in range(NICKNAME_ATTEMPTS):
            if nickname is not None:
                holder, alive = await indexes.nickname_holder(self.store, nickname)
                if alive:
                    raise AlreadyExistsError(
                        f"The nickname {nickname!r} is taken by agent"
                        f" {await self._name_of(holder or '')}; choose another."
                    )
                stale = holder
            else:
                candidates = list(itertools.islice(nickname_candidates(agent_id), NICKNAME_SCAN))
                chosen, stale = await indexes.pick_nickname(self.store, candidates)
                agent = attrs.evolve(agent, nickname=chosen)
            low = agent.nickname.lower()
            # An entry of a deleted agent is free to take over; else the entry must be new.
            nick_guard = (
                (["HEXISTS", self.keys.nicknames, low], 0)
                if stale is None
                else (["HGET", self.keys.nicknames, low], stale)
            )
            ops: builtins.list[Op] = [
                ["HSET", self.keys.agents, name, agent_id],
                ["HSET", self.keys.nicknames, low, agent_id],
                self.store.event_op("spawn", agent=agent_id, text=f"spawned {name} ({cli_name})"),
            ]
            try:
                await self.store.apply(
                    self.keys.agent(agent_id),
                    expected=None,
                    new=dumps(agent),
                    ops=ops,
                    guards=[(["HEXISTS", self.keys.agents, name], 0), nick_guard],
                )
                break
            except GuardFailed as failed:
                if failed.index == 0:
                    raise AlreadyExistsError(f"An agent named {name!r} already exists.") from None
                # Another spawn took this nickname meanwhile: look again.
        else:
            raise AlreadyExistsError(f"Could not reserve a nickname for {name!r}; try again.")
        if await control.runtime_holder(self.store):
            await control.notify(self.store, "reconcile", agent_id=agent_id)
        return agent

    async def spawn_many(
        self, names: builtins.list[str], cli: str | None = None, *, role: str | None = None
    ) -> builtins.list[Agent]:
        """Register agents ``names`` (one CLI and role for all) in ONE atomic write, with
        their index entries, spawn events and a running town's reconcile requests: the
        scale path (services/spawn_batch.py). All or nothing: raises InvalidNameError,
        InvalidInputError (a name given twice), CliNotFoundError, AlreadyExistsError
        (a name taken) with nothing written. Names and nicknames stay unique exactly as
        with :meth:`spawn`. A town giving agents their own worktrees spawns them one by
        one. Cancellable: once the write was sent, all or none may be registered."""
        from tinytown.services import spawn_batch
        from tinytown.services.executables import agent_path, check_cli_installed
        from tinytown.services.workspace import worktrees as workspaces

        spawn_batch.check_names(names)
        for what, text in (("role", role), ("cli", cli)):
            if text is not None:
                check_text(text, f"the agent's {what}")
        if not names:
            return []
        if workspaces.wants_worktree(self.config, None):  # a worktree each: the slow path
            return [await self.spawn(name, cli, role=role) for name in names]
        cli_name, argv = self.config.resolve_cli(cli)
        check_cli_installed(
            argv, cli_name, cwd=self.config.root, env={"PATH": agent_path()}, remember=True
        )
        await self._index_old_nicknames()
        return await spawn_batch.register(self.store, names, cli_name, role)

    async def safety_notice_once(self, cli: str) -> str | None:
        """The notice for CLI ``cli`` when its command skips the CLI's own permission
        prompts (``--dangerously-skip-permissions``...), the first time an agent with it
        is spawned in this town; None otherwise (shown once per town and CLI).
        Cancellable."""
        spec = self.config.cli_spec(cli)
        if not safety_notice(spec) or not await self.first_time(f"safety:{spec.name}"):
            return None
        return safety_notice(spec)

    async def first_time(self, what: str) -> bool:
        """Whether this is the first time ``what`` happens in this town (e.g. the safety
        notice of a CLI preset, shown once per town): remembered in ``tt:<town>:meta``
        in one atomic step, so concurrent callers get True once. A lost reply counts as
        the first time (a notice shown twice beats one never shown). Cancellable."""
        field = f"once:{what}"
        try:
            await self.store.apply(
                self.keys.meta,
                ops=[["HSET", self.keys.meta, field, now()]],
                guards=[(["HEXISTS", self.keys.meta, field], 0)],
            )
        except GuardFailed:
            return False
        except ReplyLostError:
            pass
        return True

    async def _index_old_nicknames(self) -> None:
        """Index the nicknames of agents recorded before the nickname index existed (an
        older town, a migration, a restore), so they count as taken. Looked at only when
        the index holds fewer entries than there are agents: a spawn costs O(1) otherwise.
        Cancellable; each entry is one idempotent ``HSETNX``."""
        agents, indexed = await indexes.index_sizes(self.store)
        if indexed >= agents:
            return
        index = await indexes.nickname_index(self.store)
        ids = set((await indexes.agent_index(self.store)).values()) - set(index.values())
        records = await self.store.mget(Agent, [self.keys.agent(i) for i in ids])
        await self.store.run_ops(
            [["HSETNX", self.keys.nicknames, a.nickname.lower(), a.id] for a in records]
        )

    async def _name_of(self, agent_id: str) -> str:
        agent = await self.store.get(Agent, self.keys.agent(agent_id))
        return agent.name if agent else agent_id

    # -- offline state changes --------------------------------------------------------

    async def record_offline(self, agent_id: str, verb: str) -> Agent:
        """Record ``verb``'s effect on the agent's state when no actor runs for it.

        Only the record changes; giving a killed agent's work back is
        :meth:`~tinytown.services.lifecycle.AgentLifecycle.apply_offline`'s job.
        """
        target_verb = {
            "interrupt": "interrupt",
            "resume": "resume_idle",
            "close": "cool",  # nothing is running, so draining ends at once
            "kill": "kill",
            "restart": "restart",
        }[verb]

        def change(agent: Agent) -> tuple[Agent, builtins.list[Op]]:
            check_verb(agent, verb)
            extra: dict[str, object] = {}
            if verb == "restart":
                extra = {"rounds_completed": 0, "state_reason": None, "last_heartbeat": now()}
            new = agent.transition(target_verb, **extra)
            return new, [self.state_event(agent, new, verb)]

        return await self._update(agent_id, change)

    async def _update(
        self, agent_id: str, change: Callable[[Agent], tuple[Agent, builtins.list[Op]]]
    ) -> Agent:
        try:
            return await self.store.update(
                Agent, self.keys.agent(agent_id), change, missing=lambda: gone(agent_id)
            )
        except Exception as exc:
            if legacy.is_wrongtype(exc):
                raise legacy.refuse_change(f"Agent {agent_id}") from None
            raise

    async def mark(self, agent_id: str, verb: str, *, reason: str, event_verb: str) -> Agent:
        """Apply the model transition ``verb`` with ``state_reason`` (e.g. ``orphan`` by
        ``tt recover``). Raises InvalidTransitionError if the agent moved on meanwhile."""

        def change(agent: Agent) -> tuple[Agent, builtins.list[Op]]:
            new = agent.transition(verb, state_reason=reason)
            return new, [self.state_event(agent, new, event_verb)]

        return await self._update(agent_id, change)

    def state_event(self, old: Agent, new: Agent, verb: str) -> Op:
        return self.store.event_op(
            "state",
            agent=new.id,
            name=new.name,
            verb=verb,
            state=new.state.value,
            text=f"{new.name}: {old.state.value} -> {new.state.value} ({verb})",
        )


def check_verb(agent: Agent, verb: str) -> None:
    """Raise InvalidTransitionError unless control ``verb`` applies to the agent now."""
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


def check_budget(budget: Budget) -> None:
    """Raise InvalidInputError unless each limit of ``budget`` is a positive amount."""
    usd, tokens = budget.usd, budget.tokens
    if usd is not None and (
        isinstance(usd, bool) or not isinstance(usd, int | float) or not 0 < usd < math.inf
    ):
        raise InvalidInputError(f"A dollar budget must be more than 0, not {usd!r}.")
    if tokens is not None and (
        isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1
    ):
        raise InvalidInputError(f"A token budget must be 1 or more, not {tokens!r}.")


def check_session_id(session_id: str) -> str:
    """A CLI session id as given (``--resume-session``), or InvalidInputError."""
    text = check_text(session_id, "the session id").strip()
    if not SESSION_ID_RE.fullmatch(text):
        raise InvalidInputError(
            f"{session_id!r} is not a session id (1-200 letters, digits, '.', '_', ':' or"
            " '-', as the CLI printed it)."
        )
    return text


def gone(agent_id: str) -> NotFoundError:
    return NotFoundError(f"Agent {agent_id} no longer exists.")


def _is_prefix(ref: str) -> bool:
    return len(ref) >= 4 and all(c in "0123456789abcdef-" for c in ref.lower())
