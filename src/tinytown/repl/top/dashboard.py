"""``tt top``: the dashboard on a town, from any terminal; the town keeps running after.

Like the REPL (docs/repl.md), prompt-toolkit runs in a worker thread with its own asyncio
loop and trio stays in charge: the :class:`~.model.Tracker` follows the town on the trio
side, the :class:`~.screen.Screen` draws what it last published, and a key's action comes
back to trio through a memory channel and runs through the command line's own handlers
(``run_command``, as ``tt interrupt alice`` would), so the dashboard says what ``tt``
says, errors included.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

import trio
from prompt_toolkit.input import Input
from prompt_toolkit.output import Output as PtOutput

from tinytown.cli.main import run_command
from tinytown.cli.output import Output
from tinytown.cli.parser import build_parser
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.repl.top.keys import Action
from tinytown.repl.top.model import Tracker
from tinytown.repl.top.screen import LEAVE_KEYS, MIN_REDRAW, Screen
from tinytown.services.town import Town

#: How long leaving waits for the screen's thread to give the terminal back.
STOP_TIMEOUT = 2.0
#: A file to write the frames drawn to, every second (measurements).
STATS_ENV = "TT_TOP_STATS"
#: Actions queued while one runs (keys pressed faster than Redis answers).
ACTIONS_QUEUED = 32


class Dashboard:
    """The dashboard on a connected town. ``input``/``output``: for tests (default: the
    terminal); ``leave_keys``: the keys that leave (the REPL adds its switch key)."""

    def __init__(
        self,
        town: Town,
        *,
        input: Input | None = None,
        output: PtOutput | None = None,
        leave_keys: tuple[str, ...] = LEAVE_KEYS,
        min_redraw: float = MIN_REDRAW,
    ) -> None:
        self.town = town
        self.tracker = Tracker(town)
        self._send, self._actions = trio.open_memory_channel[Action](ACTIONS_QUEUED)
        self._token: trio.lowlevel.TrioToken | None = None
        self.screen = Screen(
            lambda: self.tracker.view,
            town.root,
            self._submit,
            input=input,
            output=output,
            leave_keys=leave_keys,
            min_redraw=min_redraw,
        )
        self.tracker.changed = self.screen.invalidate
        self.ready = trio.Event()  # the first view is there and the screen runs
        self._parser: argparse.ArgumentParser | None = None
        #: Lines printed by the actions' commands (tests read them).
        self.said: list[str] = []

    async def run(self, done: trio.Event | None = None) -> None:
        """Show the dashboard until a leave key or until ``done`` is set.

        Cancellation takes the screen off (the terminal restored, within
        :data:`STOP_TIMEOUT` seconds), abandons an action in progress (a control verb may
        still be applied by the town) and propagates.
        """
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.tracker.run)
            nursery.start_soon(self._perform_actions)
            if done is not None:
                nursery.start_soon(self._exit_when, done)
            if os.environ.get(STATS_ENV):
                nursery.start_soon(self._stats, os.environ[STATS_ENV])
            await self._show(nursery)
            nursery.cancel_scope.cancel()

    async def _stats(self, path: str) -> None:
        """For measurements (docs/dashboard.md): every second, write the frames drawn so
        far and the seconds since the dashboard opened to ``path`` (``$TT_TOP_STATS``)."""
        started = trio.current_time()
        while True:
            await trio.sleep(1)
            seconds = trio.current_time() - started
            with contextlib.suppress(OSError):
                Path(path).write_text(f"frames {self.screen.frames}\nseconds {seconds:.3f}\n")

    async def _show(self, nursery: trio.Nursery) -> None:
        finished = threading.Event()

        def work() -> None:
            try:
                self.screen.run()
            finally:
                finished.set()

        async def started() -> None:
            while not self.screen.app.is_running and not finished.is_set():
                await trio.sleep(0.01)
            self.ready.set()

        nursery.start_soon(started)
        try:
            await trio.to_thread.run_sync(work, abandon_on_cancel=True)
        except trio.Cancelled:
            # Not left running: the thread would go on reading the keyboard.
            with trio.CancelScope(shield=True), trio.move_on_after(STOP_TIMEOUT):
                while not finished.is_set():
                    self.screen.exit()
                    await trio.sleep(0.02)
            raise

    async def _exit_when(self, done: trio.Event) -> None:
        await done.wait()
        await self.ready.wait()
        self.screen.exit()

    # -- actions ------------------------------------------------------------------------

    def _submit(self, action: Action) -> None:
        """From the screen's thread: queue ``action`` for the trio side."""

        def put() -> None:
            try:
                self._send.send_nowait(action)
            except trio.WouldBlock:
                self.screen.notify("Too many actions at once; that one was dropped.", "error")

        try:
            trio.from_thread.run_sync(put, trio_token=self._token)
        except trio.RunFinishedError:
            pass  # leaving

    async def _perform_actions(self) -> None:
        async for action in self._actions:
            text, style = await self.perform(action)
            self.screen.notify(text, style)

    async def perform(self, action: Action) -> tuple[str, str]:
        """Run ``action`` as the command line would (``tt interrupt ID``, ``tt assign ID
        TEXT``…), as the supervisor; returns what it printed (its last line) and a style.
        Cancellable (a control verb may still be applied by the town)."""
        if self._parser is None:
            self._parser = build_parser()
        argv = [action.verb, action.agent_id] + (["-"] if action.verb == "assign" else [])
        args = self._parser.parse_args(argv)
        if action.verb == "assign":
            args.description = action.text  # set here: a text may look like an option
        args.town_dir = str(self.town.root)
        stdout, stderr = io.StringIO(), io.StringIO()
        code = await run_command(args, Output(stdout, stderr), self.town, sender=SUPERVISOR_ID)
        lines = [ln for ln in (stdout.getvalue() + stderr.getvalue()).splitlines() if ln.strip()]
        self.said += lines
        said = lines[-1].removeprefix("tt: ") if lines else f"{action.verb}: done"
        return said, "note" if code == 0 else "error"


async def run_dashboard(
    root: Path,
    *,
    input: Input | None = None,
    output: PtOutput | None = None,
    done: trio.Event | None = None,
    on_ready: Callable[[Dashboard], None] | None = None,
) -> None:
    """Open the dashboard on the town at ``root`` until the user leaves (``q``) or
    ``done`` is set; the town keeps running. Cancellation restores the terminal and
    propagates."""
    async with await Town.connect(root) as town:
        board = Dashboard(town, input=input, output=output)
        if on_ready is not None:
            on_ready(board)
        await board.run(done)
