"""Unix socket paths longer than a socket address holds (``sun_path``: 104 bytes on macOS,
108 on Linux, the NUL included): towns live in deep directories, and their sockets too.

Standard library only (``os``): the ``tt`` launcher uses it before anything else loads.
"""

from __future__ import annotations

import os

#: Longer paths are reached through a short alias.
MAX_DIRECT = 100


class unix_address:
    """An address to ``connect`` (or, on Linux, ``bind``) for the socket at ``path``,
    valid inside the ``with`` block: the path itself when short enough; else
    ``/proc/self/fd/<descriptor of its directory>/<name>`` on Linux, elsewhere a symlink
    in a temporary directory under /tmp (connect only). Never changes directory: that is
    process-wide."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._dir_fd: int | None = None
        self._tmp: object | None = None

    def __enter__(self) -> str:
        path = self.path
        if len(os.fsencode(path)) <= MAX_DIRECT:
            return path
        if os.path.isdir("/proc/self/fd"):  # Linux
            self._dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
            return f"/proc/self/fd/{self._dir_fd}/{os.path.basename(path)}"
        import tempfile  # (only here: ~5 ms to import)

        tmp = tempfile.TemporaryDirectory(dir="/tmp")
        self._tmp = tmp
        alias = os.path.join(tmp.name, "s")
        os.symlink(os.path.abspath(path), alias)
        return alias

    def __exit__(self, *exc: object) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None
        if self._tmp is not None:
            self._tmp.cleanup()  # type: ignore[attr-defined]
            self._tmp = None
