"""Entry points: the REPL in the foreground of ``tt run``, and ``tt attach``."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import trio
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output as PtOutput
from prompt_toolkit.patch_stdout import patch_stdout

from tinytown.cli.output import plural
from tinytown.errors import TinytownError
from tinytown.model import AgentState
from tinytown.repl.console import Console
from tinytown.repl.core import Repl
from tinytown.repl.top.switch import add_dashboard_key
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town

HINT = "Type 'help' for the commands, Tab to complete, F2 for the dashboard; Ctrl-D leaves."
#: How long leaving waits for Redis to say what is still going on.
LEAVE_QUERY_TIMEOUT = 2.0
#: Agent states in which a round is in progress.
IN_A_ROUND = frozenset({AgentState.WORKING, AgentState.DRAINING})


async def run_town_with_repl(
    root: Path, *, input: Input | None = None, output: PtOutput | None = None
) -> None:
    """Host the town at ``root`` in this process, with the REPL in the foreground.

    Returns once the user leaves (Ctrl-D, ``exit``) or SIGTERM arrives, after the town has
    shut down gracefully (rounds in progress get ``runtime.shutdown_grace`` seconds); also
    once ``tt stop`` (from anywhere) has asked the town to stop. On leaving it prints what
    will happen (which rounds are still in progress) and, once the town has stopped, the
    outcome. A Ctrl-C or SIGTERM during that shutdown skips the grace. Cancellation stops
    the REPL and the town at once (no grace; the terminal is restored). Raises
    RuntimeBusyError if the town already runs elsewhere. ``input``/``output``: for tests
    (default: the terminal).
    """
    town = await Town.connect(root)
    try:
        with _terminal_output(input, output):
            console = Console(output)
            # The runtime still reports (crashes, shutdown) through echo, but the REPL's
            # feed shows the event stream, filtered.
            runtime = Runtime(town, echo=lambda text: console.print(text, "dim"), echo_events=False)
            repl = Repl(town, console=console, input=input, output=output)
            add_dashboard_key(repl, input=input, output=output)  # F2: the dashboard
            async with trio.open_nursery() as nursery:
                served = trio.Event()
                await nursery.start(_serve, runtime, served)
                # The hint says the town is ready: only once SIGTERM is handled gracefully.
                # 'tt stop' from elsewhere asks the runtime to shut down: the REPL leaves too.
                asked = await _repl_until_signal(
                    repl, lambda: console.print(HINT, "dim"), runtime.shutdown_requested
                )
                if asked:
                    console.print("The town was asked to stop ('tt stop'); leaving.", "warning")
                rounds = await _rounds_in_progress(town)
                grace = runtime.context.setting("runtime.shutdown_grace")
                console.print(leaving_line(rounds, grace))
                started = trio.current_time()
                async with trio.open_nursery() as shutdown:
                    await shutdown.start(_cancel_on_signal, nursery.cancel_scope)
                    runtime.shutdown_requested.set()
                    await served.wait()
                    shutdown.cancel_scope.cancel()
            aborted = nursery.cancel_scope.cancelled_caught
            elapsed = trio.current_time() - started
            if asked and not aborted:  # it may have been 'tt stop --now': claim nothing more
                console.print("Town stopped.")
            else:
                console.print(stopped_line(rounds, grace, elapsed, aborted))
    finally:
        await town.aclose()


async def attach(root: Path, *, input: Input | None = None, output: PtOutput | None = None) -> None:
    """Open the REPL on the town at ``root``, whether a runtime hosts it (in this process,
    another one, or none: then it says so once and still works).

    Returns when the user leaves (Ctrl-D, ``exit``) or on SIGTERM, after one line saying
    what goes on (``Detached; the town keeps running …``). Cancellation takes the
    prompt off the screen, restores the terminal and propagates. ``input``/``output``: for
    tests (default: the terminal).
    """
    async with await Town.connect(root) as town:
        with _terminal_output(input, output):
            console = Console(output)
            repl = Repl(town, console=console, input=input, output=output)
            add_dashboard_key(repl, input=input, output=output)  # F2: the dashboard
            holder = await town.runtime()
            if holder is not None:
                console.print(f"Attached to town {town.name}, run by {holder.describe()}.")
            else:
                console.print(
                    f"Town {town.name} is not running: commands work, but agents act only once"
                    " it runs ('tt run' elsewhere, or 'run --detach' here).",
                    "warning",
                )
            console.print(HINT, "dim")
            await _repl_until_signal(repl)
            running: bool | None = None  # unknown if Redis does not answer
            with trio.move_on_after(LEAVE_QUERY_TIMEOUT):
                try:
                    running = await town.runtime() is not None
                except (TinytownError, OSError):
                    pass
            rounds = await _rounds_in_progress(town) if running else []
            console.print(detached_line(running, rounds))


def leaving_line(rounds: list[str] | None, grace: float) -> str:
    """What leaving ``tt run``'s REPL does, given the agents with a round in progress
    (None: unknown, Redis did not answer)."""
    if rounds == []:
        return "Leaving: no rounds in progress; the town stops now."
    what = "rounds in progress finish" if rounds is None else _rounds(rounds)
    if rounds is not None:
        what += " finishes" if len(rounds) == 1 else " finish"
    return (
        f"Leaving: {what} within {grace:g} s (runtime.shutdown_grace), then the town"
        " stops. Ctrl-C stops it at once."
    )


def stopped_line(rounds: list[str] | None, grace: float, elapsed: float, aborted: bool) -> str:
    """The outcome, once the town ``tt run`` hosted has stopped."""
    requeue = "their messages are delivered again by the next 'tt run'"
    if aborted:
        return f"Town stopped at once: rounds in progress were cancelled; {requeue}."
    if rounds == []:
        return "Town stopped."
    if elapsed < grace:
        what = "rounds in progress" if rounds is None else _rounds(rounds)
        return f"Town stopped: {what} finished ({elapsed:.1f} s)."
    return f"Town stopped: rounds still running after {grace:g} s were cancelled; {requeue}."


def detached_line(running: bool | None, rounds: list[str] | None) -> str:
    """What leaving ``tt attach`` leaves behind (``running`` None: unknown)."""
    if running is None:
        return "Detached."
    if not running:
        return "Detached; the town is not running."
    going_on = f" ({_rounds(rounds)} go on)" if rounds else ""
    return f"Detached; the town keeps running{going_on}."


def _rounds(agents: list[str]) -> str:
    names = ", ".join(agents[:5]) + (", …" if len(agents) > 5 else "")
    return f"{plural(len(agents), 'round')} in progress ({names})"


async def _rounds_in_progress(town: Town) -> list[str] | None:
    """Names of the agents in a round now (working or draining), or None if Redis does not
    answer within :data:`LEAVE_QUERY_TIMEOUT`. Cancellable."""
    with trio.move_on_after(LEAVE_QUERY_TIMEOUT):
        try:
            agents = await town.agents.list()
        except (TinytownError, OSError):
            return None
        return [a.name for a in agents if a.state in IN_A_ROUND]
    return None


async def _repl_until_signal(
    repl: Repl, ready: Callable[[], None] | None = None, stop: trio.Event | None = None
) -> bool:
    """Run the REPL until the user leaves, SIGTERM arrives or ``stop`` is set; ``ready`` is
    called once SIGTERM is being handled. Returns whether ``stop`` ended it."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(_cancel_on_signal, scope, (signal.SIGTERM,))
            if stop is not None:
                nursery.start_soon(_cancel_on_event, stop, scope)
            if ready:
                ready()
            await repl.run()
            nursery.cancel_scope.cancel()
    return scope.cancelled_caught and stop is not None and stop.is_set()


async def _cancel_on_event(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _serve(
    runtime: Runtime, served: trio.Event, *, task_status: trio.TaskStatus[Runtime]
) -> None:
    try:
        await runtime.serve(task_status=task_status)
    finally:
        served.set()


async def _cancel_on_signal(
    scope: trio.CancelScope,
    signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM),
    *,
    task_status: trio.TaskStatus[None],
) -> None:
    """Cancel ``scope`` when one of ``signals`` arrives (only possible in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        task_status.started()
        await trio.sleep_forever()
    with trio.open_signal_receiver(*signals) as received:
        task_status.started()
        async for _ in received:
            scope.cancel()
            return


@contextmanager
def _terminal_output(input: Input | None, output: PtOutput | None) -> Iterator[None]:
    """On a real terminal, send stray prints (``print``, warnings) above the prompt too."""
    with patch_stdout() if input is None and output is None else nullcontext():
        yield
