"""tt logs AGENT [-f] [-n N] [--round N]: rounds written by the real process runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import trio

from tests.cli.clihelp import ok, parallel, user_error
from tinytown.cli.commands.logs import Follower, log_path, read_lines, round_section
from tinytown.runtime.logfile import rotated_files
from tinytown.runtime.process import run_cli
from tinytown.services.town import Town

PY = sys.executable


async def _round(root: Path, name: str, number: int, code: str, **kwargs: object) -> None:
    """One round of a Python snippet, logged where the runtime logs ``name``'s rounds."""
    with trio.fail_after(30):
        await run_cli(
            [PY, "-c", code],
            prompt=f"# Tinytown: round {number} for agent {name} (X), town t\n",
            cwd=root,
            env={"PATH": os.environ.get("PATH", os.defpath)},
            log_path=log_path(root, name),
            **kwargs,  # type: ignore[arg-type]
        )


def _say(*lines: str) -> str:
    return "".join(f"print({line!r})\n" for line in lines)


async def test_logs_tail_and_rounds(tt, town: Town) -> None:
    await town.agents.spawn("alice")
    assert ok(tt("logs", "alice")) == "alice has no log yet (.tt/logs/alice.log).\n"
    small = {"log_max_bytes": 400, "log_keep": 5}  # round 1 ends up in a rotated file
    await _round(town.root, "alice", 1, _say("one-a", "one-b"), **small)
    err = "import sys; sys.stderr.write('bad\\n')"
    await _round(town.root, "alice", 2, _say("two") + err, **small)
    await _round(town.root, "alice", 3, _say("three-" + "x" * 200), **small)
    assert len(rotated_files(log_path(town.root, "alice"))) > 1

    tail, one, two, last2, missing, ghost, neg = parallel(
        partial(tt, "logs", "alice"),
        partial(tt, "logs", "alice", "--round", "1"),
        partial(tt, "logs", "alice", "--round", "2"),
        partial(tt, "logs", "alice", "-n", "2"),
        partial(tt, "logs", "alice", "--round", "9"),
        partial(tt, "logs", "ghost"),
        partial(tt, "logs", "alice", "-n", "-1"),
    )
    lines = ok(tail).splitlines()
    assert lines[0].startswith("--- round 1 pid=")  # from the rotated file, oldest first
    assert "three-" + "x" * 200 in lines and lines[-1].startswith("--- round 3 pid=")
    section = ok(one).splitlines()
    assert section[0].startswith("--- round 1 pid=") and " started " in section[0]
    assert section[1:3] == ["one-a", "one-b"]
    assert section[3].startswith("--- round 1 pid=") and "exited returncode=0" in section[3]
    assert len(section) == 4
    # stdout and stderr are two pipes drained concurrently: their relative order is not defined.
    assert sorted(ok(two).splitlines()[1:3]) == ["err| bad", "two"]
    assert ok(last2).splitlines() == lines[-2:]
    assert user_error(missing) == "No round 9 in alice's log (rounds 1-3 are kept)."
    assert "No agent named 'ghost'" in user_error(ghost)
    user_error(neg, code=2)

    # The API: the same reading functions.
    kept = read_lines(log_path(town.root, "alice"))
    found = round_section(kept, 2)
    assert found is not None and found[1] and sorted(found[0][1:3]) == ["err| bad", "two"]
    assert round_section(kept, 4) is None


async def test_a_pruned_agents_log_is_still_read_by_name(tt, town: Town) -> None:
    await _round(town.root, "gone", 1, _say("left behind"))
    assert "left behind" in ok(tt("logs", "gone")).splitlines()


async def test_follow_prints_new_lines_across_rotation(tt_env, town: Town) -> None:
    await town.agents.spawn("bob")
    small = {"log_max_bytes": 300, "log_keep": 3}
    await _round(town.root, "bob", 1, _say("first"), **small)
    follower = subprocess.Popen(
        [PY, "-m", "tinytown", "logs", "bob", "-f"],
        cwd=town.root,
        env=tt_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    try:
        seen: list[str] = []

        async def until(text: str) -> None:
            with trio.fail_after(20):
                while text not in seen:
                    seen.append((await trio.to_thread.run_sync(follower.stdout.readline)).rstrip())

        await until("first")
        # Several rotations while it follows; each round once the follower has the last
        # (more rotations between two of its looks than log_keep would drop files).
        for n in range(2, 6):
            await _round(town.root, "bob", n, _say(f"line-{n}-" + "y" * 80), **small)
            await until(f"line-{n}-{'y' * 80}")
        assert [s for s in seen if s.startswith("line-")] == [
            f"line-{n}-{'y' * 80}" for n in range(2, 6)
        ]  # each once, in order, none lost to a rotation
        follower.send_signal(signal.SIGINT)
        _, err = await trio.to_thread.run_sync(lambda: follower.communicate(timeout=10))
        assert follower.returncode == 130 and "Traceback" not in err
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


async def test_follow_a_round_in_progress_until_it_ends(tt_env, town: Town) -> None:
    await town.agents.spawn("carol")
    gate = town.root / "gate"
    code = (
        "import os, time\n"
        "print('before', flush=True)\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
        "print('after', flush=True)\n"
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(_round, town.root, "carol", 4, code))
        path = log_path(town.root, "carol")
        with trio.fail_after(20):
            while not path.exists() or "before" not in path.read_text():
                await trio.sleep(0.05)
        follower = subprocess.Popen(
            [PY, "-m", "tinytown", "logs", "carol", "--round", "4", "-f"],
            cwd=town.root,
            env=tt_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert follower.stdout is not None
        with trio.fail_after(20):
            first = await trio.to_thread.run_sync(follower.stdout.readline)
            assert first.startswith("--- round 4 pid=")
            assert await trio.to_thread.run_sync(follower.stdout.readline) == "before\n"
        gate.touch()
        out, err = await trio.to_thread.run_sync(lambda: follower.communicate(timeout=20))
    assert follower.returncode == 0, err
    rest = out.splitlines()
    assert rest[0] == "after" and rest[1].startswith("--- round 4 pid=") and len(rest) == 2


def test_follower_reads_on_after_a_rename(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("a\n")
    follower = Follower(path)
    assert follower.poll() == ["a"]
    with path.open("a") as fh:
        fh.write("b\npart")
    path.rename(tmp_path / "x.log.1")
    path.write_text("c\n")
    assert follower.poll() == ["b", "partc"]  # a line rotation cut in two is one again
    follower.close()
