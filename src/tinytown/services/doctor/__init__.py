"""``tt doctor``: can this town's agents work? Free checks of each agent's CLI and the town.

Per CLI used by the agents checked (:mod:`tinytown.services.doctor.clis`): installed (path,
version), logged in where the CLI can say so for free, the preset's options accepted for
the user who runs the town (claude refuses its permission bypass as root), and, where the
town hands the CLI its MCP server, that the CLI can connect to it. For the town: Redis
answers, and whether a runtime runs it. No check is a paid call: none reaches a model.

API: ``report = await diagnose(town, ["alice"])`` (``report.blocked``, ``report.checks``);
:func:`root_notice` is the one sentence ``tt spawn`` prints as root.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Protocol

import attrs
import trio

from tinytown.errors import ConfigError
from tinytown.model import Agent
from tinytown.services.agents import AgentService
from tinytown.services.config import TownConfig
from tinytown.services.control import LeaseHolder
from tinytown.services.doctor.base import Check, CliTarget, Level, program_kind
from tinytown.services.doctor.clis import (
    bypass_refused_as_root,
    check_installed,
    check_login,
    check_options,
)
from tinytown.services.doctor.probe import PROBE_TIMEOUT, probe
from tinytown.services.executables import agent_path
from tinytown.services.mcp import wiring as mcpwiring

__all__ = ["Check", "Level", "Report", "diagnose", "diagnose_offline", "root_notice"]


class TownLike(Protocol):
    """What the doctor needs of a connected town (:class:`tinytown.services.town.Town`)."""

    root: Path
    url: str
    config: TownConfig
    agents: AgentService

    async def runtime(self) -> LeaseHolder | None: ...

    def env_for_agents(self) -> dict[str, str]: ...


@attrs.frozen
class Report:
    """Every check, in order. ``blocked``: a check failed that stops work until fixed."""

    checks: tuple[Check, ...]

    @property
    def blocked(self) -> bool:
        return any(check.level is Level.FAIL for check in self.checks)

    def count(self, level: Level) -> int:
        return sum(1 for check in self.checks if check.level is level)

    def summary(self) -> str:
        parts = [f"{self.count(Level.OK)} ok"]
        if warns := self.count(Level.WARN):
            parts.append(f"{warns} warning{'s' if warns != 1 else ''}")
        if fails := self.count(Level.FAIL):
            parts.append(f"{fails} failed")
        if skips := self.count(Level.SKIP):
            parts.append(f"{skips} skipped")
        verdict = (
            "agents cannot work until the FAIL lines are fixed."
            if self.blocked
            else "nothing blocks the agents' work."
        )
        return f"{', '.join(parts)}: {verdict}"

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": not self.blocked,
            "summary": self.summary(),
            "checks": [check.as_dict() for check in self.checks],
        }


def root_notice(
    cli_name: str,
    argv: Sequence[str],
    *,
    euid: int | None = None,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """What to tell someone who gives an agent CLI ``cli_name`` (command ``argv``) while
    running as root, when that CLI will refuse its permission bypass (claude does); None
    when nothing needs saying. ``euid`` and ``env`` default to this process's."""
    euid = os.geteuid() if euid is None else euid
    env = os.environ if env is None else env
    if not bypass_refused_as_root(argv, euid, env):
        return None
    return (
        f"running as root: CLI {cli_name!r} runs claude with its permission bypass, which"
        " claude refuses as root ('cannot be used with root/sudo privileges'), so the agent"
        " will stop for setup at its first round. Choose one: the claude-safe preset"
        " ('--cli claude-safe': --permission-mode acceptEdits, edits allowed, shell"
        " commands refused); run the town as a non-root user; or, only if this machine"
        " really is a throw-away sandbox, start 'tt run' with IS_SANDBOX=1 in its"
        " environment (the town never sets it for you)."
    )


async def diagnose(
    town: TownLike,
    agents: Sequence[str] = (),
    *,
    timeout: float = PROBE_TIMEOUT,
    euid: int | None = None,
) -> Report:
    """Check the CLIs of ``agents`` (names or ids; default: every agent that is not
    stopped, cold or in error, else the town's ``default_cli``) and the town. ``euid``:
    who runs the rounds (default: this process's user, as ``tt run`` is started alike).

    Runs the CLI probes concurrently, each with ``timeout`` seconds; each probe's process
    group is killed and reaped when it ends. Raises NotFoundError for an unknown agent.
    Cancellation: propagates, after every probe started has been killed and reaped.
    """
    chosen = [await town.agents.resolve(ref) for ref in agents]
    if not agents:
        chosen = [a for a in await town.agents.list() if not a.state.terminal]
    holder = await town.runtime()
    town_checks = [Check("town", "redis", Level.OK, f"Redis answers at {town.url}.")]
    if holder is None:
        town_checks.append(
            Check("town", "runtime", Level.WARN, "not running; 'tt run' starts the agents.")
        )
    elif holder.corrupt:
        town_checks.append(Check("town", "runtime", Level.FAIL, f"{holder.describe()}."))
    else:
        town_checks.append(Check("town", "runtime", Level.OK, f"running: {holder.describe()}."))
    env = {**os.environ, **town.env_for_agents()}
    return await _report(town.config, chosen, env, town_checks, timeout, euid)


async def diagnose_offline(
    config: TownConfig,
    problem: Check,
    *,
    timeout: float = PROBE_TIMEOUT,
    euid: int | None = None,
) -> Report:
    """The report when the town's Redis cannot be reached (``problem`` says why): the
    town's ``default_cli`` is checked, as the agents cannot be listed. Cancellable, as
    :func:`diagnose`."""
    env = {**os.environ, "PATH": agent_path()}
    return await _report(config, [], env, [problem], timeout, euid)


async def _report(
    config: TownConfig,
    agents: Sequence[Agent],
    env: Mapping[str, str],
    town_checks: list[Check],
    timeout: float,
    euid: int | None,
) -> Report:
    by_cli: dict[str, list[Agent]] = {}
    for agent in agents:
        by_cli.setdefault(agent.cli, []).append(agent)
    if not by_cli:
        by_cli[str(config.data.get("default_cli") or "claude")] = []
    results: dict[str, list[Check]] = {}

    async def one(cli: str, users: list[Agent]) -> None:
        results[cli] = await _check_cli(config, cli, users, env, timeout, euid)

    async with trio.open_nursery() as nursery:
        for cli, users in by_cli.items():
            nursery.start_soon(one, cli, users)
    cli_checks = [check for cli in by_cli for check in results[cli]]
    return Report(tuple(town_checks + cli_checks))


async def _check_cli(
    config: TownConfig,
    cli: str,
    users: list[Agent],
    env: Mapping[str, str],
    timeout: float,
    euid: int | None,
) -> list[Check]:
    names = ", ".join(a.name for a in users) or "default_cli"
    subject = f"{cli} ({names})"
    checks: list[Check] = []
    try:
        spec = config.cli_spec(cli)
    except ConfigError as exc:  # the file changed under us: say so, check the rest
        checks.append(Check(subject, "config", Level.FAIL, str(exc)))
    else:
        target = CliTarget(
            subject,
            tuple(spec.argv),
            config.root,
            dict(env),
            os.geteuid() if euid is None else euid,
        )
        installed, program = await check_installed(target, timeout)
        checks.append(installed)
        if program is not None:
            checks += await _gather(
                partial(check_login, target, program, timeout),
                partial(check_options, target, program, timeout),
                partial(_check_mcp, config, target, program, spec.mcp, users, timeout),
            )
    for agent in users:
        reason = agent.state_reason or ""
        if reason.startswith("setup:"):
            checks.append(
                Check(
                    subject,
                    "agent",
                    Level.WARN,
                    f"{agent.name} is {agent.state} ({reason}); fix that, then"
                    f" 'tt resume {agent.name}'.",
                )
            )
    return checks


async def _gather(*jobs: Callable[[], Awaitable[Check]]) -> list[Check]:
    """Run the checks ``jobs`` concurrently; their results in order."""
    out: list[Check | None] = [None] * len(jobs)

    async def run(i: int, job: Callable[[], Awaitable[Check]]) -> None:
        out[i] = await job()

    async with trio.open_nursery() as nursery:
        for i, job in enumerate(jobs):
            nursery.start_soon(run, i, job)
    return [check for check in out if check is not None]


async def _check_mcp(
    config: TownConfig,
    target: CliTarget,
    program: str,
    mcp: str | None,
    users: list[Agent],
    timeout: float,
) -> Check:
    """Can the CLI start the town's MCP server and complete the handshake? For claude:
    the server entry the rounds get is added to a throw-away claude home and ``claude mcp
    list`` connects to it (free: no login needed, nothing of the user's is changed)."""
    if not config.setting("mcp.agents"):
        return Check(target.subject, "mcp", Level.SKIP, "the town does not wire MCP into rounds.")
    if program_kind(target.argv) != "claude":
        return Check(
            target.subject, "mcp", Level.SKIP, "only claude can list its MCP servers for free."
        )
    if mcp is None:
        return Check(target.subject, "mcp", Level.SKIP, "this command is not handed MCP servers.")
    server_env = {k: target.env[k] for k in mcpwiring.PASSED_ENV if target.env.get(k)}
    if users:
        server_env.update({"TT_AGENT_ID": users[0].id, "TT_AGENT_NAME": users[0].name})
    entry = mcpwiring.server_entry(config.root, server_env)
    name = mcpwiring.SERVER_NAME
    with tempfile.TemporaryDirectory(prefix="tt-doctor-") as home:
        env = {**target.env, "HOME": home}
        added = await probe(
            [program, "mcp", "add-json", "--scope", "user", name, json.dumps(entry)],
            timeout=timeout,
            env=env,
            cwd=target.cwd,
        )
        if added.returncode != 0:
            return Check(
                target.subject,
                "mcp",
                Level.WARN,
                f"could not give claude the town's server ({added.last_line() or 'no answer'}).",
            )
        listed = await probe([program, "mcp", "list"], timeout=timeout, env=env, cwd=target.cwd)
    line = next((ln.strip() for ln in listed.stdout.splitlines() if ln.startswith(f"{name}:")), "")
    if "Connected" in line and "✘" not in line:
        return Check(
            target.subject, "mcp", Level.OK, f"claude connects to the town's MCP server ({line})."
        )
    said = line or listed.last_line() or ("timed out" if listed.timed_out else "no answer")
    return Check(
        target.subject,
        "mcp",
        Level.FAIL,
        f"claude cannot connect to the town's MCP server ({said}); try 'tt mcp' by hand.",
    )
