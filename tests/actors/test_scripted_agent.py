"""The scripted agent (and the example agent) run as real subprocesses, with a fake ``tt``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ACTORS = Path(__file__).parents[2] / "actors"
SCRIPTED = ACTORS / "scripted_agent.py"
EXAMPLE = ACTORS / "example_agent.py"

FAKE_TT = """#!/bin/sh
for arg in "$@"; do printf '%s\\n' "$arg" >> "{log}"; done
printf -- '--end--\\n' >> "{log}"
echo "fake-tt says hi"
if [ -n "$FAKE_TT_EXIT" ]; then echo "fake-tt broke" >&2; exit "$FAKE_TT_EXIT"; fi
"""


def task(task_id: str, description: str) -> str:
    return f"### Task {task_id}\nTask ID: {task_id}\nDescription: {description}\n\n"


def message(kind: str, sender: str, text: str) -> str:
    return f"### Message {kind} from {sender}\nMessage: {text}\n\n"


def run(
    prompt: str,
    *,
    agent: Path = SCRIPTED,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TT_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(agent)],
        input="You are an agent in a town.\n\n" + prompt,
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=30,
    )


@pytest.fixture
def fake_tt(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A fake ``tt`` logging its argv; returns (env to use, log file)."""
    log = tmp_path / "tt-calls.log"
    script = tmp_path / "fake-tt"
    script.write_text(FAKE_TT.format(log=log))
    script.chmod(0o755)
    return {"TT_BIN": str(script)}, log


def calls(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    found, current = [], []
    for line in log.read_text().splitlines():
        if line == "--end--":
            found.append(current)
            current = []
        else:
            current.append(line)
    return found


def test_print_and_stderr() -> None:
    result = run(task(str(uuid.uuid4()), "print hello world; stderr oops; print bye"))
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["hello world", "bye", "done: 3 directive(s)"]
    assert result.stderr.strip() == "oops"


def test_unknown_text_is_echoed() -> None:
    result = run(task(str(uuid.uuid4()), "Build the API;  Write   tests ;;sleep soon"))
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "Build the API",
        "Write   tests",
        "sleep soon",
        "done: 3 directive(s)",
    ]


@pytest.mark.parametrize(("directive", "code"), [("fail", 1), ("fail 3", 3), ("fail 0", 0)])
def test_fail_exits_at_once(directive: str, code: int) -> None:
    result = run(task(str(uuid.uuid4()), f"print before; {directive}; print after"))
    assert result.returncode == code
    assert result.stdout.splitlines() == ["before"]
    assert "failing" in result.stderr


def test_sleep() -> None:
    start = time.monotonic()
    result = run(task(str(uuid.uuid4()), "sleep 0.3; print woke"))
    assert time.monotonic() - start >= 0.3
    assert result.stdout.splitlines()[0] == "woke"


def test_pid() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTED)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(task(str(uuid.uuid4()), "pid"), timeout=30)
    assert out.splitlines()[0] == f"agent-pid {proc.pid}"


def test_env_and_cwd(tmp_path: Path) -> None:
    result = run(
        task(str(uuid.uuid4()), "env TT_AGENT_NAME; env TT_NOT_SET; cwd"),
        env={"TT_AGENT_NAME": "alice"},
        cwd=tmp_path,
    )
    assert result.stdout.splitlines()[:3] == [
        "TT_AGENT_NAME=alice",
        "TT_NOT_SET=",
        f"cwd={os.path.realpath(tmp_path)}",
    ]


def test_tasks_and_messages_in_prompt_order() -> None:
    prompt = (
        task(str(uuid.uuid4()), "print one; print two")
        + message("info", "supervisor", "print three")
        + task(str(uuid.uuid4()), "print four")
    )
    result = run(prompt)
    assert result.stdout.splitlines() == ["one", "two", "three", "four", "done: 4 directive(s)"]


def test_no_directives() -> None:
    result = run("Nothing to do here.\n")
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["done: 0 directive(s)"]


def test_echo_prompt() -> None:
    prompt = task("t-1", "echo-prompt")
    result = run(prompt)
    assert prompt.strip() in result.stdout


def test_tt_commands(fake_tt: tuple[dict[str, str], Path]) -> None:
    env, log = fake_tt
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    prompt = (
        task(first, "send bob hello there; ask supervisor what next?; complete ok")
        + task(second, "failtask could not build; spawn carol")
        + message("info", "supervisor", "complete")
    )
    result = run(prompt, env={**env, "TT_TASK_ID": "from-env"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("fake-tt says hi") == 6
    assert calls(log) == [
        ["send", "bob", "hello there"],
        ["send", "supervisor", "--query", "what next?"],
        ["task", "complete", first, "--result", "ok"],
        ["task", "fail", second, "--reason", "could not build"],
        ["spawn", "carol", "--cli", "scripted"],
        ["task", "complete", "from-env", "--result", "done"],
    ]


def test_complete_without_task_id_fails(fake_tt: tuple[dict[str, str], Path]) -> None:
    env, log = fake_tt
    result = run(message("info", "supervisor", "complete ok"), env=env)
    assert result.returncode != 0
    assert calls(log) == []


def test_tt_failure_is_propagated(fake_tt: tuple[dict[str, str], Path]) -> None:
    env, log = fake_tt
    result = run(task("t-1", "send bob hi; print unreachable"), env={**env, "FAKE_TT_EXIT": "4"})
    assert result.returncode == 4
    assert "fake-tt broke" in result.stderr
    assert "unreachable" not in result.stdout
    assert calls(log) == [["send", "bob", "hi"]]


def test_hang_until_killed() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTED)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    assert proc.stdin is not None
    proc.stdin.write(task("t-1", "hang").encode())
    proc.stdin.close()
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.5)
    proc.kill()
    assert proc.wait(timeout=10) != 0


def test_grandchild_stays_in_agent_process_group(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    with out.open("w") as stdout:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPTED)],
            stdin=subprocess.PIPE,
            stdout=stdout,
            start_new_session=True,
        )
        proc.communicate(task("t-1", "grandchild 30").encode(), timeout=30)
    assert proc.returncode == 0
    first = out.read_text().splitlines()[0]
    assert first.startswith("grandchild-pid ")
    grandchild = int(first.split()[1])
    try:
        assert os.getpgid(grandchild) == proc.pid  # alive, and in the agent's group
    finally:
        os.killpg(proc.pid, signal.SIGKILL)


def test_example_agent(tmp_path: Path, fake_tt: tuple[dict[str, str], Path]) -> None:
    env, log = fake_tt
    task_id = str(uuid.uuid4())
    result = run(
        task(task_id, "Write the README"),
        agent=EXAMPLE,
        env={**env, "TT_AGENT_NAME": "alice"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Write the README" in (tmp_path / "notes" / f"{task_id}.md").read_text()
    assert calls(log) == [
        ["task", "complete", task_id, "--result", f"wrote notes/{task_id}.md"],
        ["send", "supervisor", "--info", f"alice finished {task_id}"],
    ]
