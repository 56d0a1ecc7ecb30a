"""``tt logs AGENT [-f] [-n N] [--round N]``: an agent's round log, ``.tt/logs/<agent>.log``.

The runtime appends each round's output there (runtime/process.py): a header line
``--- round N pid=P started ... ---``, the CLI's stdout lines, its stderr lines prefixed
``err| ``, and a footer. The file rotates (``<agent>.log.1`` is the previous one, ...);
everything here reads the rotated files too, oldest first.

Following (``-f``) checks the file for new bytes every :data:`FOLLOW_INTERVAL` seconds
(a plain file has no blocking read for "more data"; a stat and a read per interval cost
nothing) and keeps reading the file it has open, so a rotation loses no line: what was
written before the rename is read from the renamed file, then the new file from its start.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import trio

from tinytown.cli.context import Context, UsageError
from tinytown.errors import NotFoundError
from tinytown.runtime.logfile import rotated_files

#: Seconds between two looks at a followed log file.
FOLLOW_INTERVAL = 0.2
#: Lines printed without --round (``-n``).
DEFAULT_LINES = 50
HEADER = re.compile(r"^--- round (?:(\d+) )?pid=\d+ started ")
FOOTER = re.compile(r"^--- round (?:(\d+) )?pid=\d+ (?!started )")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")

AGENT_HELP = "agent name, nickname, id or id prefix (or the name of a pruned agent's log)"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "logs",
        help="print an agent's round log (-f follows it)",
        description=(
            "Print the end of an agent's log (.tt/logs/AGENT.log: each round's header, the\n"
            "CLI's stdout, its stderr lines marked 'err| ', a footer). --round N prints\n"
            "that round's section instead (from the rotated files too). -f then keeps\n"
            "printing new lines until Ctrl-C (with --round: until that round ends)."
        ),
    )
    p.add_argument("agent", metavar="AGENT", help=AGENT_HELP)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    p.add_argument("--round", type=int, metavar="N", help="only round N (the latest if repeated)")
    p.add_argument(
        "-n",
        dest="count",
        type=int,
        default=DEFAULT_LINES,
        metavar="LINES",
        help="how many last lines without --round (0: all kept; default: %(default)s)",
    )
    p.set_defaults(handler=cmd_logs, town="required", readonly=True)


def log_path(root: Path, agent_name: str) -> Path:
    """Where the runtime writes an agent's rounds."""
    return root / ".tt" / "logs" / f"{agent_name}.log"


def kept_bytes(path: Path, *, live: bool = True) -> bytes:
    """Every byte kept of a log: its rotated files oldest first, then (with ``live``) the
    live file."""
    data = b""
    for file in reversed(rotated_files(path)):
        if file == path and not live:
            continue
        try:
            data += file.read_bytes()
        except FileNotFoundError:
            continue  # rotated away while we read
    return data


def read_lines(path: Path) -> list[str]:
    """Every line kept of a log, oldest first. The files are joined before splitting:
    rotation may cut a line in two."""
    return kept_bytes(path).decode("utf-8", "replace").splitlines()


def rounds_in(lines: list[str]) -> list[int]:
    """The round numbers whose headers are in ``lines``, in order."""
    return [int(m.group(1)) for line in lines if (m := HEADER.match(line)) and m.group(1)]


def round_section(lines: list[str], number: int) -> tuple[list[str], bool] | None:
    """The lines of round ``number`` (its last occurrence: a name can be reused), from its
    header to its footer, and whether the footer is there (False: still running or cut
    short). None when no header names that round."""
    starts = [
        i
        for i, line in enumerate(lines)
        if (m := HEADER.match(line)) and m.group(1) and int(m.group(1)) == number
    ]
    if not starts:
        return None
    section = [lines[starts[-1]]]
    for line in lines[starts[-1] + 1 :]:
        if HEADER.match(line):
            return section, False  # the next round began without a footer
        section.append(line)
        if FOOTER.match(line):
            return section, True
    return section, False


class Follower:
    """New lines of a log file as they are appended, across rotations."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None
        self._partial = b""

    def _open(self) -> None:
        try:
            self._file = open(self.path, "rb")  # kept open: it follows the file's renames
        except FileNotFoundError:
            self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _lines(self, data: bytes) -> list[str]:
        if not data:
            return []
        *whole, self._partial = (self._partial + data).split(b"\n")
        return [line.decode("utf-8", "replace") for line in whole]

    def pending(self) -> list[str]:
        """The unfinished last line read, if any (taken)."""
        rest, self._partial = self._partial, b""
        return [rest.decode("utf-8", "replace")] if rest else []

    def poll(self, before: bytes = b"") -> list[str]:
        """The whole lines appended since the last call (reading on into a new live file
        after a rotation); ``before`` is read first (the rotated files, at the start)."""
        out = self._lines(before)
        if self._file is None:
            self._open()
            if self._file is None:
                return out
        while True:
            out += self._lines(self._file.read())
            following = self._next_file()
            if following is None:
                return out
            # Everything of our file was read: on to the one written after it. (A line may
            # go on there: rotation splits writes at the size limit.)
            self.close()
            self._file = following

    def _next_file(self) -> BinaryIO | None:
        """The file written after ours, open, once ours has been rotated; else None."""
        assert self._file is not None
        mine = os.fstat(self._file.fileno()).st_ino
        while True:
            inodes = []
            for file in rotated_files(self.path):  # newest first
                try:
                    inodes.append((file, file.stat().st_ino))
                except FileNotFoundError:
                    return None  # rotating right now: look again next time
            ours = [i for i, (_, ino) in enumerate(inodes) if ino == mine]
            if ours and ours[0] == 0:
                return None  # ours is the live file
            if not inodes:
                return None
            # The one after ours; if ours was deleted already, the oldest kept.
            path, ino = inodes[ours[0] - 1] if ours else inodes[-1]
            try:
                fh = open(path, "rb")
            except FileNotFoundError:
                continue
            if os.fstat(fh.fileno()).st_ino == ino:
                return fh
            fh.close()  # renamed between the listing and the open: list again

    async def follow(self, emit: Callable[[str], bool | None]) -> None:
        """Call ``emit`` with each new line until it returns True. Cancellable."""
        try:
            while True:
                for line in self.poll():
                    if emit(line):
                        return
                await trio.sleep(FOLLOW_INTERVAL)
        finally:
            self.close()


async def _agent_log(ctx: Context, ref: str) -> tuple[str, Path]:
    town = ctx.need_town()
    try:
        name = (await town.agents.resolve(ref)).name
    except NotFoundError:
        # A pruned agent's log stays: its name still finds it.
        if _SAFE_NAME.fullmatch(ref) and rotated_files(log_path(town.root, ref)):
            return ref, log_path(town.root, ref)
        raise
    return name, log_path(town.root, name)


async def cmd_logs(ctx: Context, args: argparse.Namespace) -> int:
    if args.count < 0:
        raise UsageError("-n needs a count of 0 or more.")
    if args.round is not None and args.round < 0:
        raise UsageError("--round needs a round number (0 or more).")
    name, path = await _agent_log(ctx, args.agent)
    follower = Follower(path)
    try:
        # The live file through the follower: what -f prints next starts where this ends.
        lines = follower.poll(before=kept_bytes(path, live=False))
        if not args.follow:
            lines += follower.pending()
        if args.round is not None:
            found = round_section(lines, args.round)
            if found is None:
                kept = rounds_in(lines)
                where = f"rounds {kept[0]}-{kept[-1]} are kept" if kept else "no round is kept"
                raise NotFoundError(f"No round {args.round} in {name}'s log ({where}).")
            section, ended = found
            for line in section:
                ctx.out.line(line)
            if args.follow and not ended:
                await follower.follow(lambda line: _round_line(ctx, line))
            return 0
        if not lines and not args.follow:
            ctx.out.line(f"{name} has no log yet ({path.relative_to(ctx.need_town().root)}).")
            return 0
        for line in lines[-args.count :] if args.count else lines:
            ctx.out.line(line)
        if args.follow:
            await follower.follow(lambda line: ctx.out.line(line))
        return 0
    finally:
        follower.close()


def _round_line(ctx: Context, line: str) -> bool:
    """Print a line of the followed round; True once the round has ended."""
    if HEADER.match(line):
        return True  # the next round began: ours ended without a footer
    ctx.out.line(line)
    return bool(FOOTER.match(line))
