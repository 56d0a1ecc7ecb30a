"""Tests for tinytown.runtime.process: real subprocesses, real signals, no fakes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import trio

from tinytown.errors import CliNotFoundError
from tinytown.runtime.logfile import rotated_files
from tinytown.runtime.process import RoundResult, RunningProcess, run_cli

PY = sys.executable
TREE_CLI = Path(__file__).parent / "clis" / "tree_cli.py"
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def _env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", os.defpath), **extra}


def _proc_state(pid: int) -> str | None:
    """Third field of /proc/<pid>/stat, or None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rpartition(")")[2].split()[0]


def _alive(pid: int) -> bool:
    # A killed grandchild is re-parented to pid 1 and may linger as a zombie until that
    # init reaps it; a zombie runs no code, so it counts as gone.
    return _proc_state(pid) not in (None, "Z", "X")


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


async def _wait_until(predicate: Callable[[], bool], what: str, limit: float = 5.0) -> None:
    with trio.move_on_after(limit):
        while not predicate():
            await trio.sleep(0.01)
        return
    pytest.fail(f"timed out waiting for {what}")


async def _run(tmp_path: Path, argv: list[str], **kwargs: object) -> RoundResult:
    kwargs.setdefault("prompt", "")
    kwargs.setdefault("cwd", tmp_path)
    kwargs.setdefault("env", _env())
    kwargs.setdefault("log_path", tmp_path / "round.log")
    with trio.fail_after(40):
        return await run_cli(argv, **kwargs)  # type: ignore[arg-type]


async def test_prompt_reaches_stdin_and_stdout_tail(tmp_path: Path) -> None:
    code = "import sys; data = sys.stdin.read(); print('got:' + data.upper())"
    result = await _run(tmp_path, [PY, "-c", code], prompt="hello agent")
    assert result.returncode == 0
    assert not result.timed_out
    assert result.stdout_tail == "got:HELLO AGENT\n"
    assert result.stderr_tail == ""
    assert result.duration > 0


async def test_child_that_ignores_a_large_prompt(tmp_path: Path) -> None:
    # 1 MiB does not fit the pipe buffer; the child exits without reading: no BrokenPipe.
    result = await _run(tmp_path, ["sh", "-c", "echo ok"], prompt="x" * (1 << 20))
    assert result.returncode == 0
    assert result.stdout_tail == "ok\n"


async def test_env_and_cwd_are_applied(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    code = "import os; print(os.getcwd()); print(os.environ['TT_X']); print('HOME' in os.environ)"
    result = await _run(tmp_path, [PY, "-c", code], cwd=work, env=_env(TT_X="v1"))
    assert result.stdout_tail.splitlines() == [str(work.resolve()), "v1", "False"]


def _script(bindir: Path, name: str, body: str) -> Path:
    """An executable shell script ``name`` in ``bindir`` (created)."""
    bindir.mkdir(exist_ok=True)
    tool = bindir / name
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)
    return tool


async def test_program_found_through_env_path(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    _script(bindir, "my-agent-cli", 'echo from-tool "$1"')
    env = {"PATH": f"{bindir}{os.pathsep}/usr/bin:/bin"}
    result = await _run(tmp_path, ["my-agent-cli", "arg"], env=env)
    assert result.stdout_tail == "from-tool arg\n"


async def test_nonzero_exit_gives_returncode_and_stderr(tmp_path: Path) -> None:
    result = await _run(tmp_path, ["sh", "-c", "echo out; echo oops >&2; exit 3"])
    assert result.returncode == 3
    assert not result.timed_out
    assert result.stdout_tail == "out\n"
    assert result.stderr_tail == "oops\n"


async def test_megabytes_on_both_pipes_complete_with_bounded_tail(tmp_path: Path) -> None:
    # Interleaved 64 KiB writes: a reader that drained one pipe at a time would deadlock.
    code = (
        "import sys\n"
        "for _ in range(80):\n"
        "    sys.stdout.buffer.write(b'o' * 65536); sys.stdout.flush()\n"
        "    sys.stderr.buffer.write(b'e' * 65536); sys.stderr.flush()\n"
        "sys.stdout.write('END-OUT'); sys.stderr.write('END-ERR')\n"
    )
    log = tmp_path / "big.log"
    result = await _run(tmp_path, [PY, "-c", code], tail_bytes=1000, log_path=log)
    assert result.returncode == 0
    assert len(result.stdout_tail) == 1000
    assert len(result.stderr_tail) == 1000
    assert result.stdout_tail.endswith("o" * 10 + "END-OUT")
    assert result.stderr_tail.endswith("e" * 10 + "END-ERR")
    assert sum(f.stat().st_size for f in rotated_files(log)) > 2 * 80 * 65536


async def test_log_file_has_header_output_and_footer(tmp_path: Path) -> None:
    log = tmp_path / "nested" / "dir" / "agent.log"
    first = await _run(tmp_path, ["sh", "-c", "echo line-one; echo err-one >&2"], log_path=log)
    second = await _run(tmp_path, ["sh", "-c", "printf no-newline; exit 4"], log_path=log)
    text = log.read_text()
    assert f"--- round pid={first.pid} started " in text
    assert "argv=['sh', '-c', " in text
    assert "line-one\n" in text and "err-one\n" in text
    assert f"--- round pid={first.pid} exited returncode=0 after " in text
    # Append mode keeps the first round; the footer starts on its own line.
    assert f"--- round pid={second.pid} started " in text
    assert f"no-newline\n--- round pid={second.pid} exited returncode=4 after " in text
    assert text.index("line-one") < text.index("no-newline")


async def test_log_keeps_stdout_and_stderr_lines_apart(tmp_path: Path) -> None:
    """Half a stdout line, then a stderr line, then the rest: whole lines in the log,
    stderr marked, never ``partial outputError: ...`` run together."""
    log = tmp_path / "agent.log"
    code = (
        "import sys, time\n"
        "sys.stdout.write('partial output'); sys.stdout.flush(); time.sleep(0.2)\n"
        "sys.stderr.write('Error: boom\\nsecond'); sys.stderr.flush(); time.sleep(0.2)\n"
        "sys.stdout.write(' continued\\n'); sys.stdout.flush()\n"
        "sys.stdout.write('x' * 70000 + 'tail')\n"
    )
    prompt = "# Tinytown: round 7 for agent alice (Alice), town t\n"
    result = await _run(tmp_path, [PY, "-c", code], log_path=log, prompt=prompt)
    lines = log.read_text().splitlines()
    assert lines[0].startswith(f"--- round 7 pid={result.pid} started ")
    body = lines[1:-1]
    assert "partial output continued" in body
    assert "err| Error: boom" in body and "err| second" in body
    assert not any("partialoutputError" in ln or "outputError" in ln for ln in body)
    # A line longer than the buffer is broken into whole lines, nothing lost.
    assert "x" * 65536 in body and "x" * (70000 - 65536) + "tail" in body
    assert lines[-1].startswith(f"--- round 7 pid={result.pid} exited returncode=0 after ")


async def test_timeout_terminates_and_reports_timed_out(tmp_path: Path) -> None:
    code = "import time; print('working', flush=True); time.sleep(30)"
    # The child dies on SIGTERM, so the long grace is never used. (1 s: a loaded machine
    # may take a few hundred ms to start Python and print.)
    result = await _run(tmp_path, [PY, "-c", code], timeout=1.0, kill_grace=5.0)
    assert result.timed_out
    assert result.returncode is None
    assert result.stdout_tail == "working\n"
    assert 1.0 <= result.duration < 3.0
    assert not _alive(result.pid)
    assert "timed out after" in (tmp_path / "round.log").read_text()


async def test_sigterm_ignoring_child_is_killed_after_grace(tmp_path: Path) -> None:
    # The ignored disposition is inherited by the sleep child too.
    script = "trap '' TERM; echo ready; sleep 30; echo never"
    result = await _run(tmp_path, ["sh", "-c", script], timeout=0.3, kill_grace=0.2)
    assert result.timed_out
    assert result.returncode is None
    assert result.stdout_tail == "ready\n"
    assert 0.5 <= result.duration < 3.0  # waited out the grace, then SIGKILL
    assert not _alive(result.pid)
    await _wait_until(lambda: _group_members(result.pid) == [], "group to die", limit=2.0)


async def test_grandchild_holding_the_pipe_does_not_hang_the_round(tmp_path: Path) -> None:
    # The background sleep inherits stdout and would keep it open for 30 s.
    result = await _run(tmp_path, ["sh", "-c", "sleep 30 & echo $!; echo parent-done"])
    assert result.returncode == 0
    assert not result.timed_out
    grandchild = int(result.stdout_tail.split()[0])
    assert "parent-done" in result.stdout_tail
    assert result.duration < 4.0
    # SIGKILLed but not reaped by us, so its exit completes asynchronously.
    await _wait_until(lambda: not _alive(grandchild), "grandchild to die", limit=2.0)


async def test_cancellation_kills_the_whole_group_and_propagates(tmp_path: Path) -> None:
    raised: list[BaseException] = []

    async def round_task(task_status: trio.TaskStatus[RunningProcess]) -> None:
        try:
            await run_cli(
                ["sh", "-c", "sleep 100 & sleep 100; echo never"],
                prompt="",
                cwd=tmp_path,
                env=_env(),
                log_path=tmp_path / "round.log",
                kill_grace=2.0,
                task_status=task_status,
            )
        except BaseException as exc:
            raised.append(exc)
            raise

    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            handle: RunningProcess = await nursery.start(round_task)
            # sh plus its two sleeps.
            await _wait_until(lambda: len(_group_members(handle.pid)) >= 3, "group to start")
            members = _group_members(handle.pid)
            started = trio.current_time()
            nursery.cancel_scope.cancel()
        elapsed = trio.current_time() - started

    assert len(raised) == 1 and isinstance(raised[0], trio.Cancelled)
    assert elapsed < 2.0  # SIGTERM sufficed; no wait for the grace
    assert handle.pid in members
    assert not _alive(handle.pid)  # the leader is reaped before run_cli returns
    # Grandchildren are SIGKILLed but not reaped by us: their exit completes asynchronously.
    await _wait_until(lambda: not any(map(_alive, members)), "grandchildren to die", limit=2.0)
    assert _group_members(handle.pid) == []
    assert "cancelled after" in (tmp_path / "round.log").read_text()


async def test_cancelling_a_suspended_round_continues_it_so_sigterm_acts(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            handle: RunningProcess = await nursery.start(
                partial(
                    run_cli,
                    [PY, "-c", "import time; time.sleep(30)"],
                    prompt="",
                    cwd=tmp_path,
                    env=_env(),
                    log_path=tmp_path / "round.log",
                    kill_grace=5.0,
                )
            )
            handle.suspend()
            # under I/O load a process can sit in state D with the stop pending for a while
            await _wait_until(lambda: _proc_state(handle.pid) == "T", "stopped state", limit=20)
            started = trio.current_time()
            nursery.cancel_scope.cancel()
        # Without SIGCONT the stopped child would sit on SIGTERM for the full 5 s grace.
        assert trio.current_time() - started < 2.0
    assert not _alive(handle.pid)


async def test_suspend_and_resume(tmp_path: Path) -> None:
    results: list[RoundResult] = []
    # The child measures its own 2 s of work by the clock: a stop in the middle shows up
    # in what it reports (a positive signal that it was frozen, not a quiet period).
    code = (
        "import sys, time\n"
        "t = time.monotonic(); print('wor' + 'king', flush=True)  # not in the argv line\n"
        "for _ in range(100): time.sleep(0.02)  # short sleeps: a stop delays the next one\n"
        "print(f'finished {time.monotonic() - t:.3f}', flush=True)\n"
    )

    async def round_task(task_status: trio.TaskStatus[RunningProcess]) -> None:
        results.append(
            await run_cli(
                [PY, "-c", code],
                prompt="",
                cwd=tmp_path,
                env=_env(),
                log_path=tmp_path / "round.log",
                task_status=task_status,
            )
        )

    log = tmp_path / "round.log"
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            handle: RunningProcess = await nursery.start(round_task)
            await _wait_until(lambda: "working" in log.read_text(), "the child to start")
            handle.suspend()
            handle.suspend()  # idempotent
            assert handle.paused
            # under I/O load a process can sit in state D with the stop pending for a while
            await _wait_until(lambda: _proc_state(handle.pid) == "T", "stopped state", limit=20)
            stopped_at = trio.current_time()
            await trio.sleep(0.5)
            assert _proc_state(handle.pid) == "T"
            stopped_for = trio.current_time() - stopped_at
            handle.resume()
            handle.resume()  # idempotent
            assert not handle.paused
    assert results[0].returncode == 0
    elapsed = float(results[0].stdout_tail.split()[-1])
    assert stopped_for >= 0.5
    assert elapsed >= 2.0 + stopped_for - 0.1  # the stop fell inside its 2 s of work
    assert results[0].duration >= 2.5


async def test_paused_time_does_not_count_toward_timeout(tmp_path: Path) -> None:
    results: list[RoundResult] = []

    async def round_task(task_status: trio.TaskStatus[RunningProcess]) -> None:
        results.append(
            await run_cli(
                ["sh", "-c", "sleep 0.2; echo finished"],
                prompt="",
                cwd=tmp_path,
                env=_env(),
                log_path=tmp_path / "round.log",
                timeout=1.5,  # room for sh to start on a loaded machine
                kill_grace=0.2,
                task_status=task_status,
            )
        )

    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            handle: RunningProcess = await nursery.start(round_task)
            handle.suspend()
            await trio.sleep(2.0)  # past the 1.5 s timeout in wall-clock terms
            handle.resume()
    assert not results[0].timed_out
    assert results[0].returncode == 0
    assert results[0].stdout_tail == "finished\n"
    assert results[0].duration >= 2.0


async def test_missing_binary_raises_before_starting(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "round.log"
    with pytest.raises(CliNotFoundError, match="'no-such-agent-cli-xyz' is not installed"):
        await _run(tmp_path, ["no-such-agent-cli-xyz", "--help"], log_path=log)
    assert not log.exists()


async def test_a_cli_removed_after_a_round_is_reported_missing(tmp_path: Path) -> None:
    """Where a bare name was found is remembered between rounds; a CLI removed since then
    still ends the next round with the same clear error, before anything is spawned (a
    spawn through setpriv would not fail: setpriv itself starts)."""
    bin_dir = tmp_path / "bin"
    cli = _script(bin_dir, "vanishing-agent-cli", "echo here")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}"}
    first = await _run(tmp_path, [cli.name], env=env)
    assert (first.returncode, first.stdout_tail) == (0, "here\n")
    cli.unlink()
    with pytest.raises(CliNotFoundError, match="'vanishing-agent-cli' is not installed"):
        await _run(tmp_path, [cli.name], env=env)


async def test_non_executable_path_raises(tmp_path: Path) -> None:
    script = tmp_path / "agent.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    with pytest.raises(CliNotFoundError, match="not executable"):
        await _run(tmp_path, [str(script)])
    with pytest.raises(CliNotFoundError):
        await _run(tmp_path, ["./missing-dir/agent"])


def _tree_pids(log: Path) -> dict[str, int]:
    """``<kind>-pid N`` lines the tree CLI printed: kind -> pid."""
    text = log.read_text() if log.exists() else ""
    return {kind: int(pid) for kind, pid in re.findall(r"(\w+)-pid (\d+)", text)}


async def test_setsid_grandchild_is_stopped_resumed_and_killed_with_the_round(
    tmp_path: Path,
) -> None:
    log = tmp_path / "round.log"
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            handle: RunningProcess = await nursery.start(
                partial(
                    run_cli,
                    [PY, str(TREE_CLI)],
                    prompt="",
                    cwd=tmp_path,
                    env=_env(),
                    log_path=log,
                    kill_grace=1.0,
                )
            )
            await _wait_until(lambda: "cli" in _tree_pids(log), "the tree to start")
            pids = _tree_pids(log)
            assert pids["setsid"] not in _group_members(handle.pid)  # it did leave the group
            handle.suspend()
            await _wait_until(
                lambda: all(_proc_state(p) == "T" for p in pids.values()), "whole tree stopped"
            )
            handle.resume()
            await _wait_until(
                lambda: all(_proc_state(p) in ("S", "R") for p in pids.values()),
                "whole tree continued",
            )
            nursery.cancel_scope.cancel()
    await _wait_until(lambda: not any(map(_alive, pids.values())), "the whole tree to die")


async def test_round_end_sweeps_a_setsid_grandchild(tmp_path: Path) -> None:
    # `setsid` (not a group leader in a non-interactive sh) execs in place: $! is the daemon.
    result = await _run(tmp_path, ["sh", "-c", "setsid sleep 60 & echo $!"])
    assert result.returncode == 0
    daemon = int(result.stdout_tail.split()[0])
    await _wait_until(lambda: not _alive(daemon), "the setsid daemon to be killed", limit=3)


async def test_grandchild_with_setsid_and_no_environment_escapes(tmp_path: Path) -> None:
    """The documented limit (docs/process-trees.md): no group, no marker, not found."""
    log = tmp_path / "round.log"
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    run_cli,
                    [PY, str(TREE_CLI), "--escape"],
                    prompt="",
                    cwd=tmp_path,
                    env=_env(),
                    log_path=log,
                    kill_grace=1.0,
                )
            )
            await _wait_until(lambda: "cli" in _tree_pids(log), "the tree to start")
            pids = _tree_pids(log)
            nursery.cancel_scope.cancel()
    try:
        # The same sweep that killed the marked setsid grandchild passed this one by.
        await _wait_until(lambda: not _alive(pids["setsid"]), "the marked grandchild to die")
        assert _alive(pids["escaped"])
    finally:
        os.kill(pids["escaped"], signal.SIGKILL)


HOST_SCRIPT = """
import sys, trio
from tinytown.runtime.process import run_cli
async def main():
    await run_cli([sys.executable, sys.argv[1]], prompt="", cwd=sys.argv[2],
                  env={"PATH": "/usr/bin:/bin"}, log_path=sys.argv[3])
trio.run(main)
"""


async def test_kill_9_of_the_host_process_takes_the_whole_tree(tmp_path: Path) -> None:
    """Parent-death signal (the CLI) and the guard (its group and setsid descendants)."""
    log = tmp_path / "round.log"
    host = subprocess.Popen(
        [PY, "-c", HOST_SCRIPT, str(TREE_CLI), str(tmp_path), str(log)],
        start_new_session=True,
    )
    try:
        with trio.fail_after(40):
            await _wait_until(lambda: "cli" in _tree_pids(log), "the tree to start", limit=20)
        pids = _tree_pids(log)
        assert all(map(_alive, pids.values()))
    finally:
        host.kill()
        host.wait()
    await _wait_until(lambda: not any(map(_alive, pids.values())), "the tree to die", limit=5)


async def test_a_flooding_round_is_bounded_on_disk(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "agent.log"
    code = (
        "import sys\nfor _ in range(80):\n    sys.stdout.buffer.write(b'x' * 65536)\nprint('END')\n"
    )
    result = await _run(tmp_path, [PY, "-c", code], log_path=log, log_max_bytes=200_000, log_keep=2)
    assert result.returncode == 0
    assert result.stdout_tail.endswith("END\n")
    files = rotated_files(log)
    assert [f.name for f in files] == ["agent.log", "agent.log.1", "agent.log.2"]
    assert all(f.stat().st_size <= 200_000 for f in files)
    on_disk = sum(f.stat().st_size for f in log.parent.iterdir())
    assert on_disk <= 3 * 200_000  # of 5 MiB written
    assert "--- round pid=" in log.read_text()  # the footer lands in the live file
