"""The town's command server: ``tt`` commands without their import time.

``tt run`` starts this process beside the town (``python -P -m tinytown.forkserver
SOCKET``, its standard input a pipe from the town's process: when that closes, the town is
gone and so is this server). It imports the command line once, then for each request of the
launcher (:mod:`tinytown.launcher`, whose docstring has the protocol) forks a child that
takes on the client's standard streams, directory, environment, umask and command line,
and runs :func:`tinytown.entry.main` -- the same code the client would have run, not a
second implementation. The child reports ``pid`` when it starts and ``exit`` when it
ends; this server reaps it and reports a child killed by a signal.

It refuses (and the client runs the command itself) a request from another interpreter,
other flags or another module path, and any request once a module it loaded or a
directory of the module path has changed on disk since (then it exits; ``tt run`` starts
a fresh one). Only the same user may connect (the socket is private, and the peer's uid
is checked). The MCP SDK is imported at the first ``tt mcp`` (:func:`preload_mcp`).
"""

from __future__ import annotations

import fcntl
import gc
import marshal
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from typing import Any

from tinytown import launcher, townroot
from tinytown.unixaddress import unix_address

_REQUEST_TIMEOUT = 2.0  # a request not received whole by then is dropped (nothing ran)
_MAX_REQUEST = 4 << 20
_FORWARDED = {getattr(signal, name) for name in launcher.FORWARDED}


class Stamps:
    """The files of the modules loaded under a package and the directories of the module
    path, and what tells they changed."""

    def __init__(self, prefix: str = "tinytown") -> None:
        self.prefix = prefix
        self.files: dict[str, tuple[int, int, int] | None] = {}
        self.note_new()
        # pip installing, upgrading or removing any package (attrs, trio, ...) adds or
        # removes entries of a directory on the module path, which changes its mtime.
        self.files.update((path, _stamp(path)) for path in sys.path if os.path.isdir(path))

    def note_new(self) -> None:
        """Record the files of modules loaded since (they are as they were loaded)."""
        prefix = self.prefix
        modules = [
            module
            for name, module in list(sys.modules.items())
            if name == prefix or name.startswith(prefix + ".")
        ]
        main = sys.modules.get("__main__")  # this server itself, run with -m
        spec = getattr(main, "__spec__", None)
        if main is not None and spec is not None and spec.name.startswith(prefix + "."):
            modules.append(main)
        for module in modules:
            path = getattr(module, "__file__", None)
            if path and path not in self.files:
                self.files[path] = _stamp(path)

    def changed(self) -> bool:
        """Whether any of the files changed (or went) since they were recorded."""
        return any(_stamp(path) != stamp for path, stamp in self.files.items())


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def preload() -> None:
    """Import and build what the served commands use, so that each child starts with it:
    every command module and the whole parser, trio, and the converter's functions for
    every record class (cattrs generates them on first use)."""
    import attrs

    import tinytown.cli.main  # the command line, and trio (not deferred here)
    import tinytown.entry
    import tinytown.model
    from tinytown.cli import parser
    from tinytown.model.converter import warm

    parser.prepare()
    records = [c for c in vars(tinytown.model).values() if isinstance(c, type) and attrs.has(c)]
    warm(records)
    gc.collect()
    gc.freeze()  # children share the imported objects' pages (no copy on gc)


def preload_mcp() -> None:
    """For ``tt mcp``: the MCP SDK (~0.7 s to import, ~40 MB), imported by the first one
    this server forks (that one starts as slowly as in its own process), not before: a
    town whose agents' CLIs take no MCP server never pays for it."""
    if "tinytown.townhall.server" in sys.modules:
        return
    import tinytown.townhall.caller
    import tinytown.townhall.server  # noqa: F401

    gc.collect()
    gc.freeze()


class Server:
    """Accepts requests on ``listener`` until ``lifeline`` (a pipe) closes."""

    def __init__(self, listener: socket.socket, lifeline: int, lock: int | None = None) -> None:
        self.listener = listener
        self.lifeline = lifeline
        self.lock = lock  # the town's server lock: not held on by the commands
        self.stamps = Stamps()
        self.identity = launcher.identity()
        self.children: dict[int, socket.socket] = {}  # pid -> its client's connection
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_w, False)

    def serve(self) -> int:
        """Serve until the lifeline closes (0) or the code changed (STALE_EXIT)."""
        wakeup = signal.set_wakeup_fd(self.wakeup_w)
        on_child = signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the poll below
        try:
            return self._loop()
        finally:
            signal.set_wakeup_fd(wakeup)
            signal.signal(signal.SIGCHLD, on_child)

    def _loop(self) -> int:
        poller = select.poll()
        for fd in (self.listener.fileno(), self.lifeline, self.wakeup_r):
            poller.register(fd, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == self.lifeline:
                    return 0
                if fd == self.wakeup_r:
                    os.read(self.wakeup_r, 512)
                    self.reap()
                elif fd == self.listener.fileno():
                    conn, _ = self.listener.accept()
                    if self.handle(conn) == launcher.STALE_EXIT:
                        return launcher.STALE_EXIT

    def close(self) -> None:
        """Close what the server opened itself (not the listener, not the lifeline)."""
        for conn in self.children.values():
            conn.close()
        os.close(self.wakeup_r)
        os.close(self.wakeup_w)

    def handle(self, conn: socket.socket) -> int | None:
        """One request: refuse it, or fork its child (the connection goes to both: the
        child reports its exit code, this server a death by signal)."""
        fds: list[int] = []
        kept = False
        try:
            conn.settimeout(_REQUEST_TIMEOUT)
            if not _same_user(conn):
                return None
            request, fds = _receive(conn)
            if request.get("identity") != self.identity:
                conn.sendall(b"refused other interpreter or module path\n")
                return None
            if self.stamps.changed():
                conn.sendall(b"refused changed on disk\n")
                return launcher.STALE_EXIT
            if townroot.command_word(request["argv"][1:]) == "mcp":
                try:
                    preload_mcp()
                except ImportError:  # the child imports it again and says what is missing
                    pass
                self.stamps.note_new()
            pid = os.fork()
            if pid == 0:
                others = [c.fileno() for c in self.children.values()]
                _child(conn, fds, request, close=[*self._own_fds(), *others])
            self.children[pid] = conn
            kept = True
            return None
        except (OSError, ValueError, KeyError, TypeError, EOFError):
            return None  # a broken or malformed request: nothing ran
        finally:
            for fd in fds:
                os.close(fd)
            if not kept:
                conn.close()

    def _own_fds(self) -> list[int]:
        own = [self.listener.fileno(), self.lifeline, self.wakeup_r, self.wakeup_w]
        return own if self.lock is None else [*own, self.lock]

    def reap(self) -> None:
        """Collect ended children; report those killed by a signal to their client (the
        others reported their exit code themselves)."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            if os.WIFSIGNALED(status):
                try:
                    conn.sendall(b"exit -%d\n" % os.WTERMSIG(status))
                except OSError:
                    pass
            conn.close()


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request, within _REQUEST_TIMEOUT in all (a client that trickles its bytes
    does not hold the server up longer), and the three descriptors that came with it."""
    deadline = time.monotonic() + _REQUEST_TIMEOUT
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("expected three file descriptors")
    try:
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
            if len(data) > _MAX_REQUEST:
                raise ValueError("request too large")
            conn.settimeout(max(deadline - time.monotonic(), 0.001))
            more = conn.recv(65536)
            if not more:
                raise EOFError("the client left")
            data += more
        request = marshal.loads(data[4:])
        if not isinstance(request, dict):
            raise ValueError("not a request")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def _child(
    conn: socket.socket, fds: list[int], request: dict[str, Any], *, close: list[int]
) -> None:
    """In the forked child: become the client's command, run it, report, exit. A failure
    before ``pid`` was sent exits silently: the client then runs the command itself."""
    code = 1
    try:
        try:
            # Signals the client passes on wait until the command runs (_run_main): a
            # Ctrl-C at once is the command's KeyboardInterrupt, not a broken start.
            signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)
            signal.set_wakeup_fd(-1)
            for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for fd in close:
                os.close(fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            time.tzset()  # the client's TZ
            os.umask(request["umask"])
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in fds:
                os.close(fd)
            _adopt_streams(request["io"])
            sys.argv = list(request["argv"])
            conn.settimeout(None)
            conn.sendall(b"pid %d\n" % os.getpid())
            threading.Thread(target=_die_with_client, args=(conn,), daemon=True).start()
        except BaseException:
            return
        code = _run_main(sys.argv[1:]) & 0xFF
        _flush()
        conn.sendall(b"exit %d\n" % code)
    except BaseException:
        traceback.print_exc()
        _flush()
    finally:
        os._exit(code & 0xFF)


def _die_with_client(conn: socket.socket) -> None:
    """The command lives as long as its ``tt``: once the client is gone (its connection
    closes: it exited, or was killed -- say with the round of an agent whose CLI ran it),
    the command is killed as that ``tt`` was. (A client that got its exit code closes the
    connection too; the command has finished by then.)"""
    try:
        while conn.recv(64):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def _adopt_streams(encodings: list[tuple[str, str]]) -> None:
    """New ``sys.stdin/stdout/stderr`` over descriptors 0-2 (now the client's), buffered
    as Python buffers them: a terminal by line, a file or pipe in blocks (stderr by line)."""
    (in_enc, in_err), (out_enc, out_err), (err_enc, err_err) = encodings
    sys.stdin = open(0, encoding=in_enc, errors=in_err, closefd=False)
    sys.stdout = open(
        1, "w", encoding=out_enc, errors=out_err, closefd=False, buffering=1 if os.isatty(1) else -1
    )
    sys.stderr = open(2, "w", encoding=err_enc, errors=err_err, closefd=False, buffering=1)


def _run_main(argv: list[str]) -> int:
    """``tt ARGV`` as the entry point runs it, with its exit code as Python would set it
    (an uncaught exception: traceback and 1; ``SystemExit``: its code)."""
    from tinytown.entry import main

    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _FORWARDED)  # (see _child)
        return int(main(argv) or 0)
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return int(exc.code or 0)
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def listen(path: str) -> socket.socket:
    """A private listening socket at ``path`` (an old socket file there is replaced)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket file: this user only
    try:
        with unix_address(path) as address:
            listener.bind(address)
    finally:
        os.umask(old)
    listener.listen(64)
    return listener


def main(argv: list[str]) -> int:
    """``python -m tinytown.forkserver SOCKET``: serve until standard input closes. Exits
    at once (1) if another server holds the town (its lock file, ``SOCKET.lock``)."""
    (path,) = argv
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("Another command server serves this town.", file=sys.stderr)
        return 1
    preload()
    listener = listen(path)
    server = Server(listener, lifeline=0, lock=lock)
    try:
        return server.serve()
    finally:
        server.close()
        listener.close()
        try:  # only the lock's holder binds the path: it is still ours
            os.unlink(path)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
