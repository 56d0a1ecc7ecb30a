"""Town runtime commands: ``run``, ``demo``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tinytown.errors import RuntimeBusyError, TinytownError
from tinytown.services import control
from tinytown.services.config import find_town_root
from tinytown.services.town import Town

DETACH_TIMEOUT = 20.0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the town: the supervisor and one actor per agent, in this process",
        description=(
            "Host the town in this process until Ctrl-C or SIGTERM (graceful: rounds in"
            " progress may finish). With --detach, start it in the background and return"
            " once it is ready. One runtime per town: a second one is refused."
        ),
    )
    p.add_argument("--detach", action="store_true", help="run in the background")
    p.add_argument(
        "--no-repl", action="store_true", help="print events instead of opening the REPL"
    )
    p.set_defaults(handler=cmd_run, town="none")

    p = sub.add_parser(
        "demo",
        help="run a small demo town with scripted agents and print a summary",
        description=(
            "Create a throw-away town on the embedded Redis, spawn scripted agents from"
            " actors/, give them tasks that message each other, show progress live, print"
            " a summary, and clean up."
        ),
    )
    p.add_argument("--dir", type=Path, help="town directory to use (kept afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the temporary town afterwards")
    p.set_defaults(handler=cmd_demo, town="none")


def town_path(ctx: Any, args: argparse.Namespace) -> Path:
    given = getattr(ctx, "town_path", None) or getattr(args, "town_dir", None)
    return find_town_root(given or ".")


async def cmd_run(ctx: Any, args: argparse.Namespace) -> int:
    root = town_path(ctx, args)
    if args.detach:
        return await _detach(ctx, root)
    from tinytown.runtime.logfile import runtime_echo
    from tinytown.runtime.town_runtime import run_town

    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not args.no_repl
    if interactive and ctx.interactive is not None:
        await ctx.interactive.host(root)
        return 0
    await run_town(root, echo=runtime_echo(root))  # stdout, or a detached run's runtime.log
    return 0


async def _detach(ctx: Any, root: Path) -> int:
    async with await Town.connect(root) as town:
        holder = await control.runtime_holder(town.store)
        if holder:
            raise RuntimeBusyError(f"Town {town.name} is already running: {holder.describe()}.")
        log_dir = root / ".tt" / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "runtime.log"
        with open(log_path, "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "tinytown", "--town", str(root), "run", "--no-repl"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the terminal closing
                cwd=root,
                env={**os.environ, "TT_RUNTIME_LOG": str(log_path)},  # it rotates the log
            )
        deadline = time.monotonic() + DETACH_TIMEOUT
        async with town.store.events.waiter() as wait_event:
            last = await town.store.events.last_id()
            while time.monotonic() < deadline:
                holder = await control.runtime_holder(town.store)
                if holder and holder.pid == child.pid:
                    ctx.out.line(
                        f"Town {town.name} is running in the background (pid {child.pid})."
                    )
                    ctx.out.line(f"Log: {log_path}. Stop it with: kill {child.pid}")
                    return 0
                if child.poll() is not None:
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                    raise TinytownError(
                        f"The runtime exited at start (code {child.returncode}): "
                        + " / ".join(tail)
                    )
                # Block on the event stream (the runtime announces itself there); the
                # short block also notices a child that died without an event.
                last = await wait_event(last, 200)
        child.terminate()
        raise TinytownError(f"The runtime did not become ready within {DETACH_TIMEOUT:g} s.")


async def cmd_demo(ctx: Any, args: argparse.Namespace) -> int:
    from tinytown.cli.demo import run_demo

    return await run_demo(args.dir, args.keep, lambda line: print(line, flush=True))
