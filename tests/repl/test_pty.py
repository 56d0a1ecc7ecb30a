"""End to end: ``tt run`` in a real pseudo-terminal opens the REPL with its toolbar; Tab
completes, Ctrl-C cancels a command, Ctrl-D leaves and shuts the town down, exit code 0."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tinytown.services.config import TownConfig

CPR = b"\x1b[6n"  # a cursor position request
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]|\r")


class Terminal:
    """The master side of a pty whose slave is the child's terminal."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.seen = ""
        self.pos = 0  # where the last match ended

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, text: str, timeout: float = 10.0) -> None:
        """Read until ``text`` appears in the output (escape codes removed) after the last
        match; fail with the transcript after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while text not in self.seen[self.pos :]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} not seen; terminal showed:\n{self.seen}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{text!r} not seen before EOF:\n{self.seen}")
                if CPR in chunk:  # answer "where is the cursor?" as a terminal does
                    self.write("\x1b[20;1R" * chunk.count(CPR))
                self.seen = ANSI.sub("", self.seen + chunk.decode(errors="replace"))
        self.pos = self.seen.index(text, self.pos) + len(text)


def test_run_in_a_terminal(town_dir: Path, tt_env: dict[str, str]) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = {**tt_env, "TERM": "xterm"}
    child = subprocess.Popen(
        [sys.executable, "-m", "tinytown", "run"],
        cwd=town_dir,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,  # the pty becomes its controlling terminal
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(slave)
    term = Terminal(master)
    prompt = f"{TownConfig.load(town_dir).name}>"
    try:
        term.expect(prompt)
        term.expect("running (pid")  # the toolbar
        term.write("spawn bob\r")
        term.expect("The running town starts it now.")
        term.expect(prompt)
        term.write("watch\r")
        term.expect("Watching events")
        term.write("\x03")  # Ctrl-C: SIGINT from the terminal, cancels 'watch'
        term.expect("(cancelled)")
        term.expect(prompt)
        # bob has settled (the toolbar, redrawn under the new prompt, says so): no redraw of
        # the toolbar can land between the typed 'li' and the completed 'st' now.
        term.expect("idle 1")
        term.write("li\t")  # Tab completes 'list'
        term.expect("list")
        term.write("\r")
        term.expect("NICKNAME")
        term.expect("bob")
        term.expect("idle 1")  # the toolbar (agent counts by state), under the prompt
        term.write("\x04")  # Ctrl-D: leave, then the town shuts down
        term.expect("Leaving: no rounds in progress; the town stops now.")
        term.expect("Town stopped.")
        assert child.wait(timeout=15) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
