"""The entry points: ``attach`` and ``run_town_with_repl`` driven through a pipe (printing
into a buffer), SIGTERM, cancellation, and the ``tt attach`` command."""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from prompt_toolkit.data_structures import Size
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import PipeInput
from prompt_toolkit.output import DummyOutput
from prompt_toolkit.output.vt100 import Vt100_Output

from tinytown.cli.commands.attach import cmd_attach, register
from tinytown.cli.context import Context, UsageError
from tinytown.errors import TinytownError
from tinytown.model import Task
from tinytown.repl.app import attach, run_town_with_repl
from tinytown.repl.core import Repl
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town


def screen() -> tuple[Vt100_Output, io.StringIO]:
    buffer = io.StringIO()
    return Vt100_Output(buffer, lambda: Size(rows=30, columns=120), term="xterm"), buffer


async def wait_for(buffer: io.StringIO, text: str, timeout: float = 5.0) -> None:
    with trio.move_on_after(timeout):
        while text not in buffer.getvalue():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"{text!r} not shown; the screen got:\n{buffer.getvalue()}")


async def test_attach_to_a_town_that_is_not_running(
    town_dir: Path, pipe: PipeInput, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TT_AGENT_ID", "00000000-0000-4000-8000-000000000000")
    output, buffer = screen()
    pipe.send_text("list\r")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: attach(town_dir, input=pipe, output=output))
        await wait_for(buffer, "No agents")
        pipe.send_text("\x04")
    shown = buffer.getvalue()
    assert shown.count("is not running: commands work") == 1
    assert "Detached; the town is not running." in shown
    # Identity goes through the command context; the process environment is not changed.
    assert os.environ["TT_AGENT_ID"] == "00000000-0000-4000-8000-000000000000"


async def test_run_with_repl_hosts_the_town_and_shuts_it_down(
    town_dir: Path, town: Town, pipe: PipeInput
) -> None:
    output, buffer = screen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run_town_with_repl(town_dir, input=pipe, output=output))
        await wait_for(buffer, "Ctrl-D leaves")
        assert await town.runtime() is not None
        pipe.send_text("spawn carol\r")
        await wait_for(buffer, "The running town starts it now.")
        handle = await town.agent("carol")
        with trio.fail_after(10):
            while (await handle.state()).state.value != "idle":
                await trio.sleep(0.02)
        pipe.send_text("\x04")
    assert "Leaving: no rounds in progress; the town stops now." in buffer.getvalue()
    assert "Town stopped." in buffer.getvalue()
    assert await town.runtime() is None  # the lease was released


async def test_tt_stop_from_elsewhere_leaves_the_repl(
    town_dir: Path, town: Town, pipe: PipeInput
) -> None:
    output, buffer = screen()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: run_town_with_repl(town_dir, input=pipe, output=output))
            await wait_for(buffer, "Ctrl-D leaves")
            request = await town.request_stop()  # what 'tt stop' does, from another process
            assert request is not None
    shown = buffer.getvalue()
    assert "The town was asked to stop ('tt stop'); leaving." in shown
    assert "Town stopped." in shown
    assert await town.runtime() is None


async def wait_working(town: Town, name: str) -> None:
    with trio.fail_after(15):
        while True:
            try:
                if (await (await town.agent(name)).state()).state.value == "working":
                    return
            except TinytownError:
                pass  # not spawned yet
            await trio.sleep(0.02)


async def test_leaving_with_a_round_in_progress_says_what_happens(
    town_dir: Path, town: Town, pipe: PipeInput, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    output, buffer = screen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run_town_with_repl(town_dir, input=pipe, output=output))
        await wait_for(buffer, "Ctrl-D leaves")
        pipe.send_text(f"spawn carol\rassign carol 'waitfile {go}; complete ok'\r")
        await wait_working(town, "carol")
        pipe.send_text("\x04")
        await wait_for(
            buffer, "Leaving: 1 round in progress (carol) finishes within 30 s (runtime.shutdown"
        )
        assert "Town stopped" not in buffer.getvalue()
        go.touch()  # the round may finish now
    assert "Town stopped: 1 round in progress (carol) finished (" in buffer.getvalue()
    assert (await town.tasks.list())[0].state.value == "completed"


async def test_a_round_past_the_grace_is_cancelled_and_said_so(
    town_dir: Path, town: Town, pipe: PipeInput
) -> None:
    town.config.set("runtime.shutdown_grace", "0.5")
    output, buffer = screen()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: run_town_with_repl(town_dir, input=pipe, output=output))
            await wait_for(buffer, "Ctrl-D leaves")
            pipe.send_text("spawn carol\rassign carol hang\r")
            await wait_working(town, "carol")
            pipe.send_text("\x04")
    shown = buffer.getvalue()
    assert "Leaving: 1 round in progress (carol) finishes within 0.5 s" in shown
    assert "Town stopped: rounds still running after 0.5 s were cancelled; their messages" in shown


async def test_leaving_attach_says_the_town_keeps_running(
    runtime: Runtime, town_dir: Path, town: Town, pipe: PipeInput, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    carol = await town.spawn_agent("carol")
    await carol.assign(Task.new(f"waitfile {go}; complete ok"))
    await wait_working(town, "carol")
    output, buffer = screen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: attach(town_dir, input=pipe, output=output))
        await wait_for(buffer, "Ctrl-D leaves")
        pipe.send_text("\x04")
    assert "Detached; the town keeps running (1 round in progress (carol) go on)." in (
        buffer.getvalue()
    )
    assert await town.runtime() is not None
    go.touch()


async def test_sigterm_shuts_the_town_down(town_dir: Path, town: Town, pipe: PipeInput) -> None:
    output, buffer = screen()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: run_town_with_repl(town_dir, input=pipe, output=output))
            await wait_for(buffer, "Ctrl-D leaves")
            os.kill(os.getpid(), signal.SIGTERM)
    assert "Leaving: no rounds in progress" in buffer.getvalue()
    assert await town.runtime() is None


async def test_cancelling_the_repl_takes_the_prompt_down(town: Town, pipe: PipeInput) -> None:
    repl = Repl(town, input=pipe, output=DummyOutput(), history=InMemoryHistory())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(repl.run)
        await repl.ready.wait()
        with trio.fail_after(5):
            while not repl.reader.session.app.is_running:  # the prompt is up
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert not repl.reader.session.app.is_running  # the prompt thread let go of the terminal


def test_attach_is_registered_as_a_command() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["attach"])
    assert args.handler is cmd_attach
    assert args.town == "none"


class Recorder:
    """An interactive console that records what it was asked to open."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Path]] = []

    async def attach(self, root: Path) -> None:
        self.calls.append(("attach", root))

    async def host(self, root: Path) -> None:
        self.calls.append(("host", root))


async def test_attach_needs_a_terminal(town_dir: Path) -> None:
    ctx = Context(town_dir=str(town_dir), interactive=Recorder())
    with pytest.raises(UsageError, match="needs an interactive terminal"):
        await cmd_attach(ctx, argparse.Namespace())


async def test_attach_opens_the_console_it_is_given(
    town_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for stream in ("stdin", "stdout"):
        monkeypatch.setattr(f"sys.{stream}.isatty", lambda: True)
    console = Recorder()
    await cmd_attach(Context(town_dir=str(town_dir), interactive=console), argparse.Namespace())
    assert console.calls == [("attach", town_dir.resolve())]
    with pytest.raises(TinytownError, match="no interactive console"):
        await cmd_attach(Context(town_dir=str(town_dir)), argparse.Namespace())


def test_tt_does_not_import_the_repl_until_it_opens(tt_env: dict[str, str]) -> None:
    """prompt-toolkit is slow to import: a plain command must not pay for it."""
    code = (
        "import sys, tinytown.entry; heavy = ('tinytown.repl', 'prompt_toolkit');"
        " print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=tt_env, capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


async def test_the_repl_town_rides_out_dropped_connections(
    town_dir: Path, town: Town, pipe: PipeInput
) -> None:
    """`tt run` with the REPL: every connection of the town dropped (commands, wake-ups,
    the feed's event follower) pauses nothing for long: the town and the REPL go on."""
    output, buffer = screen()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run_town_with_repl(town_dir, input=pipe, output=output))
        await wait_for(buffer, "Ctrl-D leaves")
        pipe.send_text("spawn dora\r")
        handle = None
        with trio.fail_after(20):
            while handle is None:
                try:
                    handle = await town.agent("dora")
                except TinytownError:
                    await trio.sleep(0.02)
        await handle.wait(idle=True, timeout=20)
        for kind in ("normal", "pubsub"):  # every client but ours (SKIPME)
            await town.redis.execute("CLIENT", "KILL", "TYPE", kind)
        mark = len(buffer.getvalue())
        pipe.send_text("assign dora 'print after the outage'\r")
        with trio.fail_after(30):
            while True:
                tasks = await town.tasks.list()
                if tasks and tasks[0].state.value == "completed":
                    break
                await trio.sleep(0.05)
        assert "after the outage" in (tasks[0].result or "")
        with trio.fail_after(20):  # the feed followed the stream through the outage too
            while "[complete] dora" not in buffer.getvalue()[mark:]:
                await trio.sleep(0.02)
        pipe.send_text("\x04")
    assert await town.runtime() is None
