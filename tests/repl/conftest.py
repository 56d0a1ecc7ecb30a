"""Fixtures for REPL tests: the real REPL on the real Redis, driven through a pipe."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import attrs
import pytest
import trio
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import PipeInput, create_pipe_input
from prompt_toolkit.output import DummyOutput

from tinytown.repl.console import Console
from tinytown.repl.core import Repl
from tinytown.services.town import Town


@attrs.define
class Transcript:
    """Every line the REPL printed, in order."""

    lines: list[str] = attrs.field(factory=list)
    mark: int = 0

    def add(self, line: str) -> None:
        self.lines.append(line)

    def since_mark(self) -> list[str]:
        return self.lines[self.mark :]

    def set_mark(self) -> None:
        self.mark = len(self.lines)

    async def wait_for(self, text: str, timeout: float = 5.0) -> str:
        """The first line since the mark containing ``text``; fails after ``timeout``."""
        with trio.move_on_after(timeout):
            while True:
                for line in self.since_mark():
                    if text in line:
                        return line
                await trio.sleep(0.01)
        raise AssertionError(f"{text!r} not printed; the REPL printed:\n" + "\n".join(self.lines))


@attrs.define
class Driver:
    """A running REPL, its pipe (the keyboard) and what it printed."""

    repl: Repl
    pipe: PipeInput
    out: Transcript
    done: trio.Event

    async def type(self, text: str, expect: str | None = None, timeout: float = 5.0) -> str:
        """Type ``text`` (use ``\\r`` for Enter); wait for a line containing ``expect``."""
        self.out.set_mark()
        self.pipe.send_text(text)
        return await self.out.wait_for(expect, timeout) if expect else ""

    async def command(self, line: str, expect: str, timeout: float = 5.0) -> str:
        return await self.type(line + "\r", expect, timeout)


@pytest.fixture
def pipe() -> Iterator[PipeInput]:
    with create_pipe_input() as inp:
        yield inp


@pytest.fixture
async def driver(town: Town, pipe: PipeInput) -> AsyncIterator[Driver]:
    """The REPL on ``town``, running until the test ends (or the REPL leaves)."""
    transcript = Transcript()
    console = Console(DummyOutput(), on_line=transcript.add)
    repl = Repl(town, console=console, input=pipe, history=InMemoryHistory())
    done = trio.Event()

    async def run() -> None:
        try:
            await repl.run()
        finally:
            done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await repl.ready.wait()
        yield Driver(repl, pipe, transcript, done)
        nursery.cancel_scope.cancel()
