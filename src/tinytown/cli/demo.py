"""``tt demo``: a real town on the embedded Redis, with scripted agents, in one command."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from tinytown.cli.interactive import Interactive
from tinytown.errors import ConfigError
from tinytown.model import TaskState
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.endpoint import embedded_server, redis_url
from tinytown.services.town import Town

#: Seconds the dashboard stays up once the demo's work is done.
DASHBOARD_LINGER = 2.0
#: (agent, role, task description in the scripted agent's directive language)
DEMO_PLAN = [
    (
        "alice",
        "architect",
        "print sketching the API; sleep 0.4; send bob API sketch is ready for tests;"
        " send supervisor alice sketched the API; print API sketched",
    ),
    (
        "bob",
        "tester",
        "print writing tests; sleep 0.6; ask carol is the build green?; print 12 tests written",
    ),
    (
        "carol",
        "devops",
        "print building; sleep 0.3; send supervisor build is green; print build ok",
    ),
    ("alice", "architect", "print reviewing tests from bob; sleep 0.3; print review done"),
]


def find_scripted_agent() -> Path:
    """The scripted agent in the source tree's ``actors/`` (editable installs)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "actors" / "scripted_agent.py"
        if candidate.is_file():
            return candidate
    raise ConfigError("The demo needs actors/scripted_agent.py from the Tinytown source tree.")


async def run_demo(
    directory: Path | None,
    keep: bool,
    echo: Callable[[str], None],
    interactive: Interactive | None = None,
) -> int:
    """Create a town, run scripted agents through a small plan, print a summary, clean up.

    With an ``interactive`` console that has a dashboard and stdout a terminal, the town
    is shown on the dashboard (``tt top``) while it works, instead of as event lines.
    """
    agent_program = find_scripted_agent()
    root = directory or Path(tempfile.mkdtemp(prefix="tt-demo-"))
    town = await Town.init(root, "demo")
    town.config.data["agent_clis"] = {"scripted": {"command": f"{sys.executable} {agent_program}"}}
    town.config.data["default_cli"] = "scripted"
    town.config.save()
    echo(f"demo town at {root} (Redis: {town.url})")
    board = getattr(interactive, "top", None) if sys.stdout.isatty() else None
    notes: list[str] = []  # the runtime's own notes, printed once the dashboard is gone
    try:
        runtime = Runtime(town, echo if board is None else notes.append, echo_events=not board)
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.serve)
            over, closed = trio.Event(), trio.Event()
            if board is not None:
                nursery.start_soon(_dashboard, board, root, over, closed)
            handles = {}
            for name, role, _ in DEMO_PLAN:
                if name not in handles:
                    handles[name] = await town.spawn_agent(name, "scripted", role=role)
            for name, _, description in DEMO_PLAN:
                await handles[name].assign(description)
            with trio.fail_after(60):
                for handle in handles.values():
                    await handle.wait(idle=True)
                # replies to queries produce more rounds: wait until everything is quiet
                for handle in handles.values():
                    await handle.wait(idle=True)
            if board is not None:
                await trio.sleep(DASHBOARD_LINGER)  # the last rows settle on screen
                over.set()
                await closed.wait()
            runtime.shutdown_requested.set()
        for note in notes:
            echo(note)
        await _summary(town, echo)
        tasks = await town.tasks.list()
        return 0 if all(t.state is TaskState.COMPLETED for t in tasks) else 1
    finally:
        await town.aclose()
        if directory is None and not keep:
            if redis_url(town.config) is None:
                await trio.to_thread.run_sync(embedded_server(town.config).stop)
            shutil.rmtree(root, ignore_errors=True)


async def _dashboard(
    board: Callable[..., Awaitable[None]], root: Path, over: trio.Event, closed: trio.Event
) -> None:
    """Show the dashboard until the demo is over (or the user leaves it: the demo goes on)."""
    try:
        await board(root, done=over)
    finally:
        closed.set()


async def _summary(town: Town, echo: Callable[[str], None]) -> None:
    agents = await town.agents.list()
    names = {a.id: a.name for a in agents}
    echo("")
    echo("Summary")
    for task in await town.tasks.list():
        result = " ".join((task.result or "").split())[:60]
        who = names.get(task.assigned_to or "", "-")
        echo(f"  task {task.short_id}  {task.state.value:<9}  {who:<6}  {result}")
    for agent in agents:
        echo(
            f"  agent {agent.name:<6} {agent.state.value:<8} rounds={agent.rounds_completed}"
            f" tasks={agent.tasks_completed}"
        )
    mail, _ = await town.messages.inbox("00000000-0000-0000-0000-000000000001")
    echo(f"  supervisor mail: {len(mail)} message(s)")
    for msg in mail[-5:]:
        echo(f"    from {names.get(msg.sender, msg.sender[:8])}: {' '.join(msg.text.split())[:70]}")
