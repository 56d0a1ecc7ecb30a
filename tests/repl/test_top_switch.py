"""F2 (or the line ``top``) in the REPL shows the dashboard; q or F2 there comes back to
the prompt; what the town prints meanwhile waits for the prompt."""

from __future__ import annotations

import io

import trio
from prompt_toolkit.data_structures import Size
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import PipeInput
from prompt_toolkit.output.vt100 import Vt100_Output

from tinytown.repl.console import Console
from tinytown.repl.core import Repl
from tinytown.repl.top.switch import SwitchingReader, add_dashboard_key
from tinytown.services.town import Town

from .conftest import Transcript

F2 = "\x1bOQ"


async def wait_for(check: object, what: str, timeout: float = 5.0) -> None:
    with trio.move_on_after(timeout):
        while not check():  # type: ignore[operator]
            await trio.sleep(0.02)
        return
    raise AssertionError(f"never true: {what}")


async def test_f2_switches_between_the_repl_and_the_dashboard(town: Town, pipe: PipeInput) -> None:
    await town.spawn_agent("alice")
    screen = io.StringIO()
    output = Vt100_Output(screen, lambda: Size(rows=30, columns=140), term="xterm")
    transcript = Transcript()
    console = Console(output, on_line=transcript.add)
    repl = Repl(town, console=console, input=pipe, output=output, history=InMemoryHistory())
    switching = add_dashboard_key(repl, input=pipe, output=output)
    assert isinstance(repl.reader, SwitchingReader)
    assert add_dashboard_key(repl) is switching  # once is enough
    async with trio.open_nursery() as nursery:
        nursery.start_soon(repl.run)
        await repl.ready.wait()
        pipe.send_text(F2)
        await wait_for(
            lambda: switching.board is not None and switching.board.ready.is_set(), "dashboard up"
        )
        assert repl.feed.paused  # the dashboard shows the events itself
        await wait_for(lambda: "alice (" in screen.getvalue(), "alice's row drawn")
        console.print("printed meanwhile")
        await trio.sleep(0.1)
        assert "printed meanwhile" not in screen.getvalue()  # held: not over the dashboard
        pipe.send_text(F2)  # back to the prompt
        await wait_for(lambda: switching.board is None, "dashboard left")
        await wait_for(lambda: "printed meanwhile" in screen.getvalue(), "held line printed")
        assert not repl.feed.paused
        transcript.set_mark()
        pipe.send_text("list\r")
        await transcript.wait_for("alice")
        pipe.send_text("top\r")  # the line works too; q leaves
        await wait_for(
            lambda: switching.board is not None and switching.board.ready.is_set(), "again"
        )
        pipe.send_text("q")
        await wait_for(lambda: switching.board is None, "left with q")
        assert switching.shown == 2
        nursery.cancel_scope.cancel()
