"""Deferred imports: ``import name`` that costs nothing until the module is used.

The ``tt`` program defers trio (:mod:`tinytown.entry`): its import (~150 ms here) costs
more than a one-shot command's work, and those commands never touch it.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from typing import Any


class _Deferred(types.ModuleType):
    """A stand-in for a module not imported yet: ``import name`` binds it at no cost;
    the first attribute looked up on it imports the real module (into ``sys.modules``)
    and copies its namespace here, so later look-ups are plain attribute reads.

    (:class:`importlib.util.LazyLoader` is not enough: the ``import`` statement itself
    reads ``__spec__`` of a module found in ``sys.modules``, which loads it.)"""

    def __getattr__(self, attr: str) -> Any:
        with _loading:
            if self.__dict__.get("_deferred_loaded") is None:
                del sys.modules[self.__name__]
                real = importlib.import_module(self.__name__)
                self.__dict__.update(real.__dict__)
                self.__dict__["_deferred_loaded"] = real
        return getattr(self.__dict__["_deferred_loaded"], attr)


_loading = threading.RLock()


def defer_import(name: str) -> None:
    """Make ``import name`` free until the module is used (see :class:`_Deferred`).

    For trio, whose import (~150 ms here) costs more than a one-shot command's work:
    ``tt send`` never touches it (outside trio the store uses blocking sockets, and
    store/oneshot.py drives the command without an event loop), ``tt run`` does at once.
    No-op when the module is already imported or cannot be found."""
    if name in sys.modules:
        return
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None:
        return
    stand_in = _Deferred(name)
    stand_in.__spec__ = spec
    sys.modules[name] = stand_in


