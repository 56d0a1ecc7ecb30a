"""``tt``'s entry point: parse, connect the town, run the handler under trio, map errors.

Exit codes: 0 success; 1 a user error (one ``tt: <sentence>`` line on stderr, never a
traceback); 2 a usage error; 3 ``tt wait`` timed out; 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial

import trio

from tinytown.cli.context import Context, UsageError
from tinytown.cli.interactive import Interactive
from tinytown.cli.output import Output
from tinytown.cli.parser import parser_for
from tinytown.errors import NotInitializedError, TinytownError
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.town import Town
from tinytown.store import oneshot
from tinytown.store.client import ResponseError

#: Handlers run without an event loop (store/oneshot.py): one-shot commands whose work is
#: a few Redis round trips -- no sleep, wait, thread or task -- so they never import trio.
#: A handler that needs trio before it wrote anything is run again under trio; one that
#: needs it after writing fails loudly (NeedsEventLoop), so add only such simple ones.
#: (The readers here write nothing: for them the fallback is always safe.)
LOOP_FREE = frozenset(
    {
        "cmd_send",
        "cmd_town_status",
        "cmd_task_finish",
        "cmd_task_current",
        "cmd_task_show",
        "cmd_tasks",
        "cmd_list",
        "cmd_inbox",
        "cmd_backlog_list",
    }
)


def main(argv: list[str] | None = None, *, interactive: Interactive | None = None) -> int:
    """Run one ``tt`` command line and return its exit code.

    ``interactive``: the console that ``tt attach`` and ``tt run`` in a terminal open (the
    program's entry point, :mod:`tinytown.entry`, passes the REPL); without one, ``tt run``
    prints events and ``tt attach`` says it is not available.
    """
    parser = parser_for(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    out = Output()
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        command = partial(run_command, args, out, interactive=interactive)
        if getattr(args.handler, "__name__", "") in LOOP_FREE:
            return oneshot.run(command)  # no event loop, no trio import (~150 ms)
        return trio.run(command)
    except BaseException as exc:
        if _leaf(exc, KeyboardInterrupt):
            return 130
        if _leaf(exc, BrokenPipeError):  # `tt events | head`: the reader left
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        raise


async def run_command(
    args: argparse.Namespace,
    out: Output,
    town: Town | None = None,
    *,
    interactive: Interactive | None = None,
    sender: str | None = None,
) -> int:
    """Run a command parsed by the ``tt`` parser and return its exit code; user errors are
    printed through ``out``, not raised. This is the one way both front ends run commands.

    ``town``: an already connected town to use (the REPL's); otherwise one is connected
    (and closed afterwards) when the command's ``town`` default asks for it.
    ``interactive``: the console for ``attach``/``run`` (see :func:`main`).
    ``sender``: who acts (an agent id, or the supervisor's); default: the agent whose round
    runs this process (``TT_AGENT_ID``), else the supervisor. The REPL passes the
    supervisor: its user is the supervisor whatever the environment says.
    Cancellation propagates (a town opened here is closed first).
    """
    ctx = Context(
        out=out,
        town=town,
        json=bool(getattr(args, "json", False)),
        town_dir=getattr(args, "town_dir", None),
        interactive=interactive,
    )
    if sender is not None:
        ctx.agent_id = None if sender == SUPERVISOR_ID else sender
    opened: Town | None = None
    try:
        mode = getattr(args, "town", "required")
        if ctx.town is None and mode in ("required", "optional"):
            try:
                opened = ctx.town = await ctx.connect(args)
            except NotInitializedError:
                if mode == "required":
                    raise
        return int(await args.handler(ctx, args) or 0)
    except BaseException as exc:
        error = _leaf(exc, TinytownError) or _leaf(exc, ResponseError)
        if error is None:
            raise
        if isinstance(error, ResponseError):
            out.error(f"Redis answered with an error: {error}.")
            return 1
        out.error(str(error))
        return int(getattr(error, "exit_code", 1))
    finally:
        if ctx.town is not None:
            for warning in dict.fromkeys(ctx.town.store.warnings):
                out.warn(warning)
            ctx.town.store.warnings.clear()
        if opened is not None:
            await opened.aclose()


def _leaf(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """``exc`` if it is a ``kind``, or the first ``kind`` inside an exception group whose
    leaves are all ``kind`` (trio wraps errors raised in nurseries)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_leaf(e, kind) for e in exc.exceptions]
        if leaves and all(leaves):
            return leaves[0]
    return None


__all__ = ["UsageError", "main", "run_command"]
