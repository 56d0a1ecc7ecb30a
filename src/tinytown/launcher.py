"""The ``tt`` program's fast start: hand the command line to the town's command server.

A one-shot ``tt`` spends most of its time importing (attrs, cattrs, the model: ~100 ms
here) before a few milliseconds of Redis work. While a town runs, ``tt run`` keeps a
command server beside it (:mod:`tinytown.forkserver`) that has imported everything
once; this client, which imports nothing but ``socket``, passes it the command line, the
current directory, the environment and its own standard input, output and error (the
file descriptors themselves), and the server forks a child that runs the very same
``main()`` on them. The child's exit code comes back and becomes this process's.

Whenever the server is absent, refuses (it runs other code than this process would) or
ends before the command started, :func:`run` returns None and the command runs here as
usual: the server only ever saves time. ``TT_FORK_SERVER=off`` never uses it;
``TT_FORK_SERVER=require`` fails instead of running the command here (tests, debugging).

Protocol (a Unix socket, ``<town>/.tt/commands.sock``, same user only): the client sends
a 4-byte length and a :mod:`marshal`-ed request with file descriptors 0, 1 and 2
attached; the answer is lines: ``pid N`` (the child started the command), then
``exit N`` (its exit code; ``-S`` when signal S killed it), or ``refused REASON`` before
anything started.
"""

from __future__ import annotations

import marshal
import os
import sys

from tinytown import townroot
from tinytown.unixaddress import unix_address

TYPE_CHECKING = False  # not typing's: it costs this module's client ~6 ms
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from typing import Any

SOCKET_NAME = "commands.sock"
#: Exit code of a server that found its code changed on disk (``tt run`` starts a new one).
STALE_EXIT = 75
MODE_ENV = "TT_FORK_SERVER"
#: The commands the server runs: short, non-interactive ones, and ``tt mcp`` over stdio
#: (every round of an agent's CLI starts one; its import alone is ~1 s). The REPL,
#: `tt run`, `tt attach`, `tt top`, the long-lived readers (`tt events`, `tt logs`) and
#: `tt mcp --http` own their terminal or live long: they run in their own process.
SERVED = frozenset(
    {
        "send", "inbox", "history", "status", "towns", "list", "spawn", "interrupt",
        "resume", "close", "kill", "restart", "wait", "prune", "assign", "tasks", "task",
        "backlog", "costs", "budget", "reply", "stop", "recover", "reclaim",
    }
)  # fmt: skip
#: Signals passed on to the child while it runs (the child is not in this terminal's
#: process group, so the terminal's Ctrl-C reaches only this process).
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")


class LauncherError(Exception):
    """``TT_FORK_SERVER=require`` and the command could not run in the server."""


def socket_path(root: str) -> str:
    """The command server's socket of the town at ``root``."""
    return os.path.join(root, townroot.STATE_DIR, SOCKET_NAME)


def run(argv: Sequence[str]) -> int | None:
    """Run ``tt ARGV`` in the town's command server and return its exit code, or None
    when the command is to run in this process instead (no server, a refusal, a command
    the server does not run). Raises LauncherError instead of returning None under
    ``TT_FORK_SERVER=require``. Blocks until the command ends; signals that would end
    this process (SIGINT, SIGTERM, SIGHUP, SIGQUIT) are passed on to the command."""
    mode = os.environ.get(MODE_ENV, "")
    if mode == "off":
        return None
    try:
        code = _run(argv)
    except OSError:
        code = None
    if code is None and mode == "require":
        raise LauncherError("the town's command server did not run the command")
    return code


def _run(argv: Sequence[str]) -> int | None:
    word = townroot.command_word(argv)
    town_dir = townroot.town_option(argv)
    if word == "mcp":  # served over stdio only (an agent's CLI starts it every round)
        town_dir = _stdio_mcp_town(argv, town_dir)
        if town_dir is None:
            return None
    elif word not in SERVED:
        return None
    if not _streams_open():
        return None
    root = townroot.locate(town_dir or None, os.environ)
    if root is None:
        return None
    # The C modules: socket.py and signal.py build enums at import (~7 ms here).
    import _socket

    channel = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            with unix_address(socket_path(root)) as address:
                channel.connect(address)
        except OSError:
            return None
        blob = marshal.dumps(request(argv))
        return _exchange(channel, len(blob).to_bytes(4, "big") + blob)
    finally:
        channel.close()


def _stdio_mcp_town(argv: Sequence[str], town_dir: str | None) -> str | None:
    """For ``tt mcp`` over stdio (nothing after the command but ``-t/--town DIR``): the
    town named ("" for none); None for any other ``tt mcp`` (``--http``: a long-lived
    server of its own; ``token``)."""
    rest = list(argv[list(argv).index("mcp") + 1 :])
    while rest[:1] in (["-t"], ["--town"]) and len(rest) >= 2:
        town_dir, rest = rest[1], rest[2:]
    return (town_dir or "") if not rest else None


def _streams_open() -> bool:
    """Whether descriptors 0, 1 and 2 are open: a closed one would be taken by our own
    socket and handed to the command as that stream."""
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return False
    return True


def request(argv: Sequence[str]) -> dict[str, Any]:
    """What the server needs to run ``argv`` as this process would: the command line,
    where and with what it runs, and what tells whether the server's code is ours."""
    streams = [sys.stdin, sys.stdout, sys.stderr]
    return {
        "argv": ["tt", *argv],
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": _umask(),
        "io": [(s.encoding, s.errors) if s is not None else ("utf-8", "strict") for s in streams],
        "identity": identity(),
    }


#: The interpreter flags that change what a program does (not, e.g., -B or -q).
_FLAGS = ("optimize", "dev_mode", "utf8_mode", "bytes_warning", "int_max_str_digits")


def identity() -> list[Any]:
    """What must be equal between client and server for the server to run the command
    as the client would: the interpreter, its version, flags and warnings, the module
    search path."""
    return [
        os.path.realpath(sys.executable),
        sys.prefix,  # the virtual environment (its python is a link to the same binary)
        sys.version,
        [getattr(sys.flags, flag, None) for flag in _FLAGS],
        list(sys.warnoptions),
        # Without -P, [0] is the script's own directory (or the current one): not compared.
        [os.path.realpath(p) for p in (sys.path if sys.flags.safe_path else sys.path[1:])],
    ]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _exchange(channel: Any, payload: bytes) -> int | None:
    """Send the request with our standard streams, then read the answer until the exit
    code; signals are passed on from before the request leaves. None only while nothing
    has started: once the command reported its pid, whatever happens next is answered
    here (it never runs a second time in this process)."""
    import _signal
    import _socket

    child: list[int] = []  # the command's pid, then a pidfd for it (when there are)
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if child:
            _kill(child, signum, _signal)
        else:
            pending.append(signum)

    previous = {sig: _signal.signal(sig, forward) for sig in _forwarded(_signal)}
    try:
        fds = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in (0, 1, 2))
        sent = channel.sendmsg([payload], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        while sent < len(payload):
            sent += channel.send(payload[sent:])
        try:
            for word, value in _lines(channel):
                if word == "pid" and value.isdigit():
                    child.append(int(value))
                    try:  # signals go to that very process, even once its pid is reused
                        child.append(os.pidfd_open(child[0]))
                    except (AttributeError, OSError):
                        pass
                    for signum in pending:
                        _kill(child, signum, _signal)
                elif word == "exit" and value.lstrip("-").isdigit():
                    return _exit_code(int(value), _signal)
                elif word == "refused":
                    break
        except OSError:
            if not child:
                raise
        if child:  # it started, and ended without a word: its outcome is unknown
            sys.stderr.write(
                "tt: the town's command server ended while the command ran;"
                " it may or may not have taken effect.\n"
            )
            return 1
        return None
    finally:
        for sig, handler in previous.items():
            _signal.signal(sig, handler)
        if len(child) > 1:
            os.close(child[1])
        if pending and not child:
            for signum in pending:  # the command runs here: it gets them now
                os.kill(os.getpid(), signum)


def _kill(child: list[int], signum: int, signals: Any) -> None:
    """Signal the command (``[pid]`` or ``[pid, pidfd]``)."""
    try:
        if len(child) > 1:
            signals.pidfd_send_signal(child[1], signum)
        else:
            os.kill(child[0], signum)
    except ProcessLookupError:  # it has just ended: its exit code is on its way
        pass


def _exit_code(code: int, signals: Any) -> int:
    """This process's exit code for the command's; a command killed by signal S (``-S``)
    ends this process by S too, as it would have ended in its own process."""
    if code >= 0:
        return code
    signals.signal(-code, signals.SIG_DFL)
    os.kill(os.getpid(), -code)
    return 128 - code  # (a signal whose default is not to end the process)


def _forwarded(signals: Any) -> list[int]:
    return [getattr(signals, name) for name in FORWARDED]


def _lines(channel: Any) -> Iterator[tuple[str, str]]:
    """The answer's lines as (word, rest), until the server closes the connection."""
    buffer = b""
    while True:
        data = channel.recv(4096)
        if not data:
            return
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            word, _, value = line.decode("ascii", "replace").strip().partition(" ")
            yield word, value
