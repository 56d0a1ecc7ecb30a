"""The console: lines printed from any thread, held back while another application owns
the terminal (Console.hold), then printed in order."""

from __future__ import annotations

import io
import threading

import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.output.vt100 import Vt100_Output

from tinytown.repl.console import Console


def _console() -> tuple[Console, io.StringIO, list[str]]:
    screen = io.StringIO()
    output = Vt100_Output(screen, lambda: Size(rows=24, columns=80), term="xterm")
    seen: list[str] = []
    return Console(output, on_line=seen.append), screen, seen


def _from_a_thread(console: Console, text: str) -> None:
    worker = threading.Thread(target=console.print, args=(text,))
    worker.start()
    worker.join()


def test_hold_keeps_lines_off_the_terminal_until_released() -> None:
    console, screen, seen = _console()
    console.print("before")  # no prompt on screen: written at once
    assert "before" in screen.getvalue()
    with console.hold():
        _from_a_thread(console, "first")
        with console.hold():  # holds nest
            console.print("second")
        assert "first" not in screen.getvalue()  # the outer hold still keeps them
        console.print("third")
        assert seen == ["before", "first", "second", "third"]  # observers see them at once
    text = screen.getvalue()
    assert text.index("first") < text.index("second") < text.index("third")
    console.print("after")
    assert "after" in screen.getvalue()


def test_a_hold_left_by_an_exception_still_prints() -> None:
    console, screen, _ = _console()
    with pytest.raises(KeyError), console.hold():
        console.print("kept")
        raise KeyError("boom")
    assert "kept" in screen.getvalue()
    console.print("later")
    assert "later" in screen.getvalue()  # not held any more
