"""What the fake agent CLIs (fake_claude.py, fake_codex.py, fake_gemini.py) share.

They obey the scripted agent's directives (``actors/scripted_agent.py``: its engine is
imported, not copied); what those directives print becomes the round's *answer*, which
each fake then reports in its real CLI's format. Standard library only.

Directives added for every fake (in a task's ``Description:`` line, ``;``-separated):

    cost USD                  the round's reported cost in dollars (default 0.001)
    tokens IN OUT [CACHED]    the round's reported tokens (default 100 20 0)
    session                   print "session <id>", plus " resumed" when continuing one
    ratelimit [RESET-SECONDS] fail as the CLI does when rate-limited (naming the reset)
    overloaded                fail as the CLI does when its provider is overloaded
    notloggedin               fail as the CLI does without a login / key

Each fake adds its own (see its docstring). Environment:

    FAKE_CLI_LOG=PATH   append one JSON line per run: {"cli", "argv", "cwd"}
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scripted_agent  # the directive engine, next to this file

FAILURES = ("ratelimit", "overloaded", "notloggedin")


@dataclass
class Round:
    """What the directives did: the answer text, the usage to report, and how it ended
    (``failure``: a failure directive and its argument; ``exit_code``: ``fail N``)."""

    answer: str = ""
    input_tokens: int = 100
    output_tokens: int = 20
    cached_tokens: int = 0
    cost: float = 0.001
    failure: tuple[str, str] | None = None
    exit_code: int | None = None


def refused(text: str) -> Round:
    """A round the provider refused: its error text as the answer, nothing spent."""
    return Round(answer=text, input_tokens=0, output_tokens=0, cached_tokens=0, cost=0.0)


def emit(obj: object) -> None:
    """One JSON value on one line, as the real CLIs print it (compact, UTF-8)."""
    print(json.dumps(obj, separators=(",", ":"), ensure_ascii=False), flush=True)


def log_run(cli: str) -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    path = os.environ.get("FAKE_CLI_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            record = {"cli": cli, "argv": sys.argv[1:], "cwd": os.getcwd()}
            log.write(json.dumps(record) + "\n")


def read_prompt() -> str:
    return sys.stdin.buffer.read().decode("utf-8", errors="replace")


def new_session() -> str:
    return str(uuid.uuid4())


def run(
    prompt: str,
    session: str,
    resumed: bool,
    stops: tuple[str, ...] = (),
    extra: Mapping[str, Callable[[str], str]] | None = None,
) -> Round:
    """Obey the prompt's directives, capturing what they print as the answer. Stops at
    the first failure directive (or one of the fake's own ``stops``), or at ``fail N``.
    ``extra``: the fake's own printing directives (word -> a function of the rest)."""
    extra = extra or {}
    out = Round()
    buf = io.StringIO()
    todo = scripted_agent.directives(prompt)
    for text, task_id in todo:
        word, _, rest = text.partition(" ")
        rest = rest.strip()
        try:
            if word in FAILURES or word in stops:
                out.failure = (word, rest)
                break
            if word == "cost" and rest:
                out.cost = float(rest)
                continue
            if word == "tokens" and rest:
                numbers = [int(n) for n in rest.split()]
                if not 2 <= len(numbers) <= 3:
                    raise ValueError
                out.input_tokens, out.output_tokens = numbers[0], numbers[1]
                out.cached_tokens = numbers[2] if len(numbers) == 3 else 0
                continue
            if word in extra:
                buf.write(extra[word](rest) + "\n")
                continue
            if word == "session" and not rest:
                buf.write(f"session {session}{' resumed' if resumed else ''}\n")
                continue
            with contextlib.redirect_stdout(buf):
                scripted_agent.execute(text, task_id, prompt)
        except ValueError:
            buf.write(text + "\n")
        except SystemExit as exc:  # `fail N` (or a failed `tt` call)
            out.exit_code = exc.code if isinstance(exc.code, int) else 1
            break
    else:
        buf.write(f"done: {len(todo)} directive(s)\n")
    out.answer = buf.getvalue().strip()
    return out


def usage_error(message: str, code: int = 1) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.exit(code)
