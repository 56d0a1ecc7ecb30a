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

from tinytown.repl.console import Console
from tinytown.repl.core import Repl
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town

HINT = "Type 'help' for the commands, Tab to complete; Ctrl-D leaves."


async def run_town_with_repl(
    root: Path, *, input: Input | None = None, output: PtOutput | None = None
) -> None:
    """Host the town at ``root`` in this process, with the REPL in the foreground.

    Returns once the user leaves (Ctrl-D, ``exit``) or SIGTERM arrives, after the town has
    shut down gracefully (rounds in progress get ``runtime.shutdown_grace`` seconds). A
    Ctrl-C or SIGTERM during that shutdown skips the grace. Cancellation stops the REPL and
    the town at once (no grace; the terminal is restored). Raises RuntimeBusyError if the
    town already runs elsewhere. ``input``/``output``: for tests (default: the terminal).
    """
    town = await Town.connect(root)
    try:
        with _terminal_output(input, output):
            console = Console(output)
            # The runtime still reports (crashes, shutdown) through echo, but the REPL's
            # feed shows the event stream, filtered.
            runtime = Runtime(town, echo=lambda text: console.print(text, "dim"), echo_events=False)
            repl = Repl(town, console=console, input=input, output=output)
            async with trio.open_nursery() as nursery:
                served = trio.Event()
                await nursery.start(_serve, runtime, served)
                # The hint says the town is ready: only once SIGTERM is handled gracefully.
                await _repl_until_signal(repl, lambda: console.print(HINT, "dim"))
                console.print("Shutting down the town (Ctrl-C to stop at once)…", "dim")
                async with trio.open_nursery() as shutdown:
                    await shutdown.start(_cancel_on_signal, nursery.cancel_scope)
                    runtime.shutdown_requested.set()
                    await served.wait()
                    shutdown.cancel_scope.cancel()
    finally:
        await town.aclose()


async def attach(root: Path, *, input: Input | None = None, output: PtOutput | None = None) -> None:
    """Open the REPL on the town at ``root``, whether a runtime hosts it (in this process,
    another one, or none: then it says so once and still works).

    Returns when the user leaves (Ctrl-D, ``exit``) or on SIGTERM. Cancellation takes the
    prompt off the screen, restores the terminal and propagates. ``input``/``output``: for
    tests (default: the terminal).
    """
    async with await Town.connect(root) as town:
        with _terminal_output(input, output):
            console = Console(output)
            repl = Repl(town, console=console, input=input, output=output)
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


async def _repl_until_signal(repl: Repl, ready: Callable[[], None] | None = None) -> None:
    """Run the REPL until the user leaves or SIGTERM arrives; ``ready`` is called once
    SIGTERM is being handled."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(_cancel_on_signal, scope, (signal.SIGTERM,))
            if ready:
                ready()
            await repl.run()
            nursery.cancel_scope.cancel()


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
