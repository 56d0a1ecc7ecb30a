"""Town runtime commands: ``run``, ``stop``, ``demo``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import trio

from tinytown.cli.command_server import keep_command_server
from tinytown.errors import RuntimeBusyError, TinytownError
from tinytown.services import control
from tinytown.services.config import TownConfig, find_town_root
from tinytown.services.town import Town, TownStoppedError

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
        "stop",
        help="stop the running town (wherever it runs), then return",
        description=(
            "Ask the town's runtime ('tt run', here or on another host) to shut down, as\n"
            "SIGTERM would: it takes no new work and rounds in progress get\n"
            "runtime.shutdown_grace seconds to finish. --now cancels them at once (their\n"
            "process trees are killed; their messages stay queued for the next run).\n"
            "Waits until the town has stopped. Agents keep their state: 'tt run' resumes."
        ),
    )
    add_stop_options(p)
    p.set_defaults(handler=cmd_stop, town="none")

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


def add_stop_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--now", action="store_true", help="cancel rounds in progress at once (no grace)"
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="how long to wait for the town to stop (default: its grace + kill_grace + 30 s)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"needs a number of seconds, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"needs a positive number of seconds, not {text!r}")
    return value


async def cmd_stop(ctx: Any, args: argparse.Namespace) -> int:
    root = town_path(ctx, args)
    if ctx.town is not None:
        await stop_town(ctx, ctx.town, now=args.now, timeout=args.timeout)
        return 0
    try:
        town = await Town.connect(root, search=False, start_server=False)
    except TownStoppedError as exc:
        ctx.out.line(f"Town {exc.town} is not running (its Redis is stopped too).")
        return 0
    async with town:
        await stop_town(ctx, town, now=args.now, timeout=args.timeout)
    return 0


async def stop_town(ctx: Any, town: Town, *, now: bool, timeout: float | None) -> bool:
    """Stop the town's runtime if one holds it, saying what happens; return whether one
    did. Waits until it has stopped (TimeoutExpiredError after ``timeout``)."""
    kill_grace = float(town.config.setting("runtime.kill_grace"))
    default_wait = float(town.config.setting("runtime.shutdown_grace")) + kill_grace + 30
    limit = timeout if timeout is not None else default_wait
    started = trio.current_time()
    asked = await town.request_stop(now=now, timeout=min(limit, control.REPLY_TIMEOUT))
    if asked is None:
        ctx.out.line(f"Town {town.name} is not running.")
        return False
    where = asked.holder.describe()
    rounds = ", ".join(asked.rounds)
    if not asked.rounds:
        ctx.out.line(f"Asked town {town.name} ({where}) to stop; no round was in progress.")
    elif now or asked.grace == 0:
        ctx.out.line(
            f"Asked town {town.name} ({where}) to stop now: rounds of {rounds} are cancelled."
        )
    else:
        ctx.out.line(
            f"Asked town {town.name} ({where}) to stop: rounds of {rounds} get up to"
            f" {asked.grace:g} s to finish."
        )
    if timeout is None:
        limit = max(limit, asked.grace + kill_grace + 30)  # the runtime's own grace counts
    await town.wait_stopped(asked.holder, max(limit - (trio.current_time() - started), 0.1))
    ctx.out.line(f"Town {town.name} stopped ({trio.current_time() - started:.1f} s).")
    return True


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
    async with trio.open_nursery() as nursery:
        if TownConfig.load(root).setting("runtime.command_server"):
            nursery.start_soon(keep_command_server, root)
        if interactive and ctx.interactive is not None:
            await ctx.interactive.host(root)
        else:  # events go to stdout, or a detached run's runtime.log
            await run_town(root, echo=runtime_echo(root))
        nursery.cancel_scope.cancel()
    return 0


async def _detach(ctx: Any, root: Path) -> int:
    async with await Town.connect(root) as town:
        if town.started_server:
            ctx.out.line(f"Started the town's Redis ({town.url}).")
        holder = await control.runtime_holder(town.store)
        if holder:
            raise RuntimeBusyError(f"Town {town.name} is already running: {holder.describe()}.")
        log_dir = root / ".tt" / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / "runtime.log"
        with open(log_path, "ab") as log:
            import subprocess  # only `tt run --detach` starts a process

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
                    ctx.out.line(f"Log: {log_path}. Stop it with: tt stop")
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

    return await run_demo(
        args.dir, args.keep, lambda line: print(line, flush=True), ctx.interactive
    )
