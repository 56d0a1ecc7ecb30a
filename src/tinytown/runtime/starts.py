"""Starting many actors at once in few round trips (a batch spawn, a town restarted).

An actor's start used to cost ~7 round trips of its own: the reconcile request's record
read and answer, the actor's record read, its in-flight list, the ``ready`` write (a
read and a script) and a first take. With 10,000 agents spawned together that was
70,000 round trips from as many concurrent tasks, each opening a pooled connection.
Here the actors starting at about the same time share:

* one read for all of them (:meth:`Starts.read`): a pipeline of every record, in-flight
  list and inbox length; each actor's wake-up token is taken before it, so an inbox
  seen empty lets the actor skip its first take and wait on that token (a message
  pushed after the read wakes it);
* one read and one atomic write marking all of them ``ready`` (:meth:`Starts.ready`):
  a compare-and-set of each record against the value just read, with each state event;
  a record changed in between drops only that agent out of the batch, to its own update;
* one check per batch that a CLI is installed and one parse of its preset.

A reconcile request (sent by every spawn) reads nothing itself: it starts the actor, whose
start read finds the agent gone or terminal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import attrs

from tinytown.errors import MalformedRecordError
from tinytown.model import Agent, dumps, loads
from tinytown.runtime.batching import Batcher
from tinytown.runtime.context import Context
from tinytown.runtime.wakeups import Token
from tinytown.services.agentcli.spec import CliSpec
from tinytown.store import indexes
from tinytown.store.records import Conflict, GuardFailed, Op

#: Actors whose reads (and ``ready`` writes) go in one round trip.
BATCH = 500


@attrs.frozen
class Start:
    """What an actor starts from, read in one round trip with other actors'."""

    agent: Agent
    raw: str  # the record as read (a ready write finding it unchanged reuses ``agent``)
    inflight: list[str]
    inbox_empty: bool  # after ``token`` was taken: the first take can wait on the token
    token: Token


@attrs.frozen
class Ready:
    """One actor's ``ready`` write: ``change`` gives the new record (or the same one)."""

    agent_id: str
    change: Callable[[Agent], Agent]
    read: Start | None = None  # the start read, if the record may not have changed since


class Starts:
    """The batched parts of actor starts and reconcile requests. The supervisor runs
    :meth:`loops` in its nursery; actors and the control desk submit to them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.keys = ctx.town.keys
        self._reads: Batcher[str, Start | Exception | None] = Batcher(self._read_many, BATCH)
        self._readies: Batcher[Ready, bool] = Batcher(self._ready_many, BATCH)
        self._specs: dict[str | None, CliSpec] = {}
        self._installed: set[tuple[tuple[str, ...], str, Path]] = set()

    def loops(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        return [
            ("start reads", self._reads.run),
            ("ready writes", self._readies.run),
        ]

    # -- what actors and requests submit ------------------------------------------------

    async def read(self, agent_id: str) -> Start | None:
        """The agent's record, in-flight messages and whether its inbox is empty, read
        with other starting actors' (None: no such agent). Raises MalformedRecordError
        (this agent's record only) or the batch's Redis error. Cancellable."""
        start = await self._reads.submit(agent_id)
        if isinstance(start, Exception):
            raise start
        return start

    async def ready(self, item: Ready) -> bool:
        """Write the actor's ``ready`` change with other actors' in one atomic step; False
        when its record changed under the batch or is gone (nothing written for it: the
        caller makes the change alone). Cancellable: the write may still be made (a
        compare-and-set against the value just read, so never over a newer record)."""
        return await self._readies.submit(item)

    def cli_spec(self, cli: str | None) -> CliSpec:
        """The CLI's spec, parsed once per batch of starts (ConfigError as
        ``Context.cli_spec``)."""
        if cli not in self._specs:
            self._specs[cli] = self.ctx.cli_spec(cli)
        return self._specs[cli]

    def check_installed(
        self, check: Callable[..., None], argv: Sequence[str], name: str, cwd: Path
    ) -> None:
        """``check`` (``check_cli_installed``) once per batch of starts for the same
        command and directory: a batch is one moment (each round checks again). Raises
        what ``check`` raises (CliNotFoundError), remembering nothing then."""
        key = (tuple(argv), name, cwd)
        if key not in self._installed:
            check(list(argv), name, cwd=cwd, env=self.ctx.agent_env)
            self._installed.add(key)

    # -- the batch calls ---------------------------------------------------------------

    async def _read_many(self, agent_ids: list[str]) -> list[Start | Exception | None]:
        self._new_batch()
        hub = self.ctx.hub
        tokens = [hub.token(i) for i in agent_ids]  # before the read: no wake-up missed
        raws, inflight, queued = await indexes.start_snapshot(self.ctx.store, agent_ids)
        out: list[Start | Exception | None] = []
        for i, agent_id in enumerate(agent_ids):
            raw = raws[i]
            if raw is None:
                out.append(None)
                continue
            try:
                agent = loads(Agent, raw, where=self.keys.agent(agent_id))
            except MalformedRecordError as exc:  # that actor's problem, not the batch's
                out.append(exc)
                continue
            out.append(Start(agent, raw, inflight[i], queued[i] == 0, tokens[i]))
        return out

    def _new_batch(self) -> None:
        """A new moment: ``tinytown.toml`` may have changed, a CLI been (un)installed."""
        self.ctx.refresh_config()
        self._specs.clear()
        self._installed.clear()

    async def _ready_many(self, items: list[Ready]) -> list[bool]:
        """Read the records afresh (one MGET: the start read may be stale by now, e.g.
        after a heartbeat rewrote the records), change them, and write all in
        one compare-and-set step. A record changed between this read and the write drops
        out (its actor updates it alone) and the rest go again on a fresh read."""
        done = [False] * len(items)
        todo = list(range(len(items)))
        while todo:
            keys = [self.keys.agent(items[i].agent_id) for i in todo]
            raws = await indexes.raw_records(self.ctx.store, keys)
            writes: list[tuple[int, str, str, str, Op | None]] = []  # i, key, old, new, event
            for i, key, raw in zip(todo, keys, raws, strict=True):
                if raw is None:
                    continue  # gone: the actor's own update says so
                start = items[i].read
                try:
                    old = (
                        start.agent if start and start.raw == raw else loads(Agent, raw, where=key)
                    )
                    new = items[i].change(old)
                except Exception:
                    continue  # refused (e.g. no longer startable): the actor's own update says why
                if new == old:
                    done[i] = True  # nothing to write (e.g. paused meanwhile)
                    continue
                event = (
                    self.ctx.town.agents.state_event(old, new, "ready")
                    if new.state != old.state
                    else None
                )
                writes.append((i, key, raw, dumps(new), event))
            if not writes:
                break
            failed = await self._write(writes)
            if failed is None:
                for i, *_ in writes:
                    done[i] = True
                break
            todo = [i for n, (i, *_) in enumerate(writes) if n != failed]
        return done

    async def _write(self, writes: list[tuple[int, str, str, str, Op | None]]) -> int | None:
        """All ``writes`` in one compare-and-set step; None, or the position of the one
        whose record changed (then nothing was written)."""
        (_, key0, old0, new0, _), rest = writes[0], writes[1:]
        guards: list[tuple[list[str], object]] = [(["GET", key], old) for _, key, old, _, _ in rest]
        ops: list[Op] = [["SET", key, new] for _, key, _, new, _ in rest]
        ops += [event for *_, event in writes if event is not None]
        try:
            await self.ctx.store.apply(key0, expected=old0, new=new0, ops=ops, guards=guards)
        except Conflict:
            return 0
        except GuardFailed as failed:
            return failed.index + 1
        return None
