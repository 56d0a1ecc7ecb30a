"""What every part of a running town shares: plain context, no behaviour of its own.

The composition is one-way: ``town_runtime.Runtime`` builds a :class:`Context`, the
``Supervisor`` on top of it, and the supervisor builds the dispatcher, the agent actors
and their mailboxes. Everything below the runtime imports this module, never the
modules above it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

from tinytown.errors import ConfigError
from tinytown.model import Agent, Message
from tinytown.runtime.ratelimit import CliHolds
from tinytown.runtime.slots import RoundSlots, slot_count
from tinytown.runtime.wakeups import WakeHub
from tinytown.services.agentcli.spec import CliSpec
from tinytown.services.config import TownConfig
from tinytown.services.town import Town
from tinytown.store.queues import Queues
from tinytown.store.records import Store

Echo = Callable[[str], None]


class Context:
    """The town, its store and queues, the wake-up hub, configuration and report sink."""

    def __init__(self, town: Town, echo: Echo | None = None) -> None:
        self.town = town
        self.store: Store = town.store
        self.queues = Queues(town.store)
        self.config: TownConfig = town.config
        self.hub = WakeHub()
        self.echo = echo
        #: Observation hook: called after each mailbox take with (agent id, messages taken).
        self.on_take: Callable[[str, int], None] | None = None
        #: Called with each message the supervisor receives (front ends keep recent mail).
        self.on_mail: Callable[[Message], None] | None = None
        #: Asks the town to shut down (``tt stop``; True: at once). Set by the runtime.
        self.on_shutdown: Callable[[bool], None] | None = None
        self.agent_env = {**os.environ, **town.env_for_agents()}  # computed once, not per round
        #: CLI processes at once, town-wide (``runtime.max_parallel_rounds``, read at start).
        self.slots = RoundSlots(slot_count(self.setting("runtime.max_parallel_rounds")))
        #: CLIs whose rounds and dispatch wait after a rate limit.
        self.holds = CliHolds()

    def report(self, text: str) -> None:
        """One line for the person running the town (when an echo is attached)."""
        if self.echo:
            self.echo(f"{dt.datetime.now():%H:%M:%S} {text}")

    def refresh_config(self) -> None:
        """Re-read ``tinytown.toml`` if it changed (one stat; called per spawn, restart or
        reconcile request and per actor start). A file that became invalid is reported
        and the settings in use stay."""
        try:
            if self.config.refresh():
                self.report(f"config: re-read {self.config.path}")
        except ConfigError as exc:
            self.report(f"config: {exc} (keeping the settings in use)")

    def setting(self, key: str) -> float:
        """A numeric runtime setting."""
        return float(self.config.setting(key))

    def cli_spec(self, cli: str | None) -> CliSpec:
        """How the agent CLI ``cli`` (a preset, a raw command, None: the default) runs
        and reports its rounds. Raises ConfigError for a preset that cannot be used."""
        return self.config.cli_spec(cli)

    def workdir(self, agent: Agent) -> Path:
        """The town root (the agent's git worktree when it has one), or the agent's scope
        directory when it names one inside it."""
        root = self.town.root / agent.worktree if agent.worktree else self.town.root
        if agent.current_scope:
            scoped = (root / agent.current_scope).resolve()
            if scoped.is_dir() and scoped.is_relative_to(root):
                return scoped
        return root
