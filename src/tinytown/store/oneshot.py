"""Running a one-shot command's ``async`` code without an event loop, when it can be.

A ``tt send`` connects, runs a few Redis commands and exits. Outside a trio run the
store's pool uses blocking connections (store/blocking.py) whose ``async`` methods never
suspend, so the same service coroutines the runtime awaits can be driven to completion
with one ``coro.send(None)``: no event loop, and no ``import trio`` (~150 ms of a
command's start-up, more than all its work).

:func:`run` is optimistic. If the coroutine does need trio (a thread, a sleep, a
timeout, a nursery: trio raises "must be called from async context", or the coroutine
suspends), it is abandoned and run again from the start under ``trio.run`` -- but only
when it has sent Redis nothing but idempotent reads so far (``blocking.writes``), so a
change is never made twice. Otherwise the error is raised: a command that writes and
then needs trio must not be driven here (a programming error, found by its tests).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tinytown.store import blocking
from tinytown.store.client import in_trio

T = TypeVar("T")

#: trio's message when one of its functions is called outside ``trio.run``.
NEEDS_TRIO = "must be called from async context"


class NeedsEventLoop(RuntimeError):
    """The coroutine needed trio after it had written to Redis: it cannot be re-run."""


def run(async_fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """``async_fn(*args)`` to completion: without an event loop if it never suspends,
    else from the start under ``trio.run`` (only if it wrote nothing yet; see above).

    Ctrl-C raises KeyboardInterrupt out of a loop-less run (there is nothing to cancel).
    """
    writes = blocking.writes
    coro = async_fn(*args)
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    except RuntimeError as exc:
        if NEEDS_TRIO not in str(exc):
            raise
        if blocking.writes != writes:
            raise NeedsEventLoop(
                f"{getattr(async_fn, '__name__', async_fn)} needed trio after writing"
            ) from exc
    else:  # it suspended: abandon it (its finally blocks run) and start again under trio
        coro.close()
        if blocking.writes != writes:
            raise NeedsEventLoop(
                f"{getattr(async_fn, '__name__', async_fn)} suspended after writing"
            )
    import trio

    return trio.run(async_fn, *args)


async def run_sync(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, a blocking call, kept off the event loop: in a worker thread under
    trio (cancellable like ``trio.to_thread.run_sync``: abandoned, not stopped), and
    directly outside trio, where nothing else would run meanwhile."""
    if in_trio():
        import trio

        return await trio.to_thread.run_sync(fn, *args)
    return fn(*args)
