"""One bad entry never stops the town (issue 9, point 3): malformed control requests, a
corrupt lease, garbage records and inbox entries are reported and skipped."""

from __future__ import annotations

import functools
import json
import subprocess
import time
import uuid

from tests.faults.faultkit import TT, FaultTown, one_error_line, until
from tinytown.model import Message, dumps
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.model.message import TaskAssign
from tinytown.store.server import EmbeddedServer

MALFORMED_CONTROL = ['["kill"]', "5", "null", '"kill"', "{not json", '{"verb": 5}']


def _reply(ft: FaultTown, request_id: str) -> str | None:
    return ft.check_runtimes() or ft.r.lpop(ft.key("reply", request_id))


def _mentions(events: list[dict[str, str]], *words: str) -> int:
    return sum(any(w in json.dumps(e).lower() for w in words) for e in events)


def test_malformed_control_requests_are_refused_and_the_town_goes_on(ft: FaultTown) -> None:
    agent_id = ft.spawn("w")
    proc = ft.start_run()
    ft.wait_state("w", "idle")
    mark = ft.r.xrevrange(ft.key("events"), count=1)[0][0]
    for raw in MALFORMED_CONTROL:
        ft.r.rpush(ft.key("control"), raw)
    # Well-formed JSON with an id, but nonsense: answered with an error reply.
    asked = {}
    for verb, target in (("frobnicate", agent_id), ("kill", "not-an-agent")):
        rid = str(uuid.uuid4())
        asked[rid] = verb
        ft.r.rpush(ft.key("control"), json.dumps({"id": rid, "verb": verb, "agent_id": target}))
    ft.wake("control")
    for rid, verb in asked.items():
        popped = until(
            functools.partial(_reply, ft, rid), 10, what=f"a reply to the bad {verb} request"
        )
        reply = json.loads(popped)
        assert reply["ok"] is False and reply.get("error"), reply
    ft.check_runtimes()
    # Each malformed entry is reported as an event.
    until(
        lambda: _mentions(ft.events(mark)[1:], "control") >= len(MALFORMED_CONTROL),
        10,
        what=lambda: f"events about the bad requests: {ft.events(mark)[1:]}",
    )
    # A control verb after them still works, and so does the agent.
    paused = ft.tt("interrupt", "w", timeout=20)
    assert paused.returncode == 0 and "paused" in paused.stdout, paused.stderr
    ft.ok("resume", "w", timeout=20)
    task = ft.assign("w", "print still here")
    ft.wait_task(task, "completed")
    assert proc.poll() is None
    assert "Traceback" not in ft.run_log()


def test_corrupt_lease_blocks_nothing_and_down_force_clears_it(embedded_ft: FaultTown) -> None:
    town = embedded_ft
    town.spawn("w")
    lease = town.key("runtime")
    town.r.set(lease, "not json {")  # no expiry: it would stay forever
    run = subprocess.Popen(
        [*TT, "run", "--no-repl"],
        cwd=town.root,
        env=town.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    town.procs.append(run)  # type: ignore[arg-type]
    # Either a clear refusal or taking the town over; never hanging on the bad value.
    until(
        lambda: run.poll() is not None or town.holder_pid() == run.pid,
        20,
        what="tt run to refuse or take over the corrupt lease",
    )
    if run.poll() is not None:
        out, err = run.communicate()
        refused = subprocess.CompletedProcess(run.args, run.returncode, out, err)
        line = one_error_line(refused)
        assert "lease" in line.lower() or "running" in line.lower(), line
        assert town.r.get(lease) == "not json {"  # nothing was changed behind our back
    else:
        run.terminate()
        assert run.wait(timeout=20) == 0
        town.r.set(lease, "not json {")
    started = time.monotonic()
    down = town.tt("down", timeout=20)  # the corrupt lease: refuse clearly, or stop
    assert time.monotonic() - started < 15
    assert "Traceback" not in down.stdout + down.stderr
    if down.returncode != 0:
        one_error_line(down)
        assert "--force" in down.stderr, down.stderr
        forced = town.tt("down", "--force", timeout=20)
        assert forced.returncode == 0, forced.stderr
        assert "Traceback" not in forced.stdout + forced.stderr
    EmbeddedServer(town.root / ".tt").start()
    town.r.connection_pool.disconnect()
    assert town.r.get(lease) is None
    # The town runs again.
    town.start_run()
    task = town.assign("w", "print after the lease")
    town.wait_task(task, "completed")


def test_garbage_records_and_inbox_entries_are_skipped(ft: FaultTown) -> None:
    agent_id = ft.spawn("w")
    bad_task, bad_agent = str(uuid.uuid4()), str(uuid.uuid4())
    ft.r.set(ft.key("task", bad_task), "{not json")
    ft.r.zadd(ft.key("tasks"), {bad_task: 1.0})
    ft.r.rpush(ft.key("backlog"), bad_task)
    ft.r.set(ft.key("agent", bad_agent), "garbage")
    ft.r.hset(ft.key("agents"), "ghost", bad_agent)
    inbox = ft.key("inbox", agent_id)
    ft.r.rpush(inbox, "garbage", '{"type": "task_assign"}', "[]", '{"type": "no_such_type"}')
    # A well-formed assignment of the corrupt task: the round must report it, not drop it.
    ft.r.rpush(inbox, dumps(Message.new(SUPERVISOR_ID, agent_id, TaskAssign(bad_task))))
    proc = ft.start_run()  # starts with all of it in place
    ft.wait_state("w", "idle")
    first = ft.assign("w", "print first")
    ft.wait_task(first, "completed")
    backlog = ft.ok_json("backlog", "add", "print from the backlog")["id"]
    ft.wait_task(backlog, "completed")  # dispatch skips the garbage backlog entry
    # Garbage arriving while the town runs.
    ft.r.rpush(inbox, "more garbage")
    ft.wake(agent_id)
    second = ft.assign("w", "print second")
    ft.wait_task(second, "completed")
    ft.wait_state("w", "idle")
    assert ft.inflight("w") == 0  # nothing stuck in flight
    assert proc.poll() is None
    # The reading commands report and skip, they do not crash.
    for args in (("list",), ("tasks",), ("status", "--deep"), ("backlog", "list"), ("inbox",)):
        result = ft.tt(*args, "--json")
        assert result.returncode == 0, f"tt {args}: {result.stderr}"
        assert "Traceback" not in result.stderr
    reported = ft.run_log() + json.dumps(ft.events())
    assert bad_task in reported or bad_task[:8] in reported, "the corrupt task was not reported"
    assert any(w in reported.lower() for w in ("malformed", "corrupt", "invalid", "skipped"))
    assert "Traceback" not in ft.run_log()
