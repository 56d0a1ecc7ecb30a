"""Store: compare-and-set with guards and ops in one script, update retries, mget."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from tinytown.errors import (
    InvalidTransitionError,
    MalformedRecordError,
    NotFoundError,
    ReplyLostError,
)
from tinytown.model import Message, Ping, Priority, Task, TaskState, dumps, loads
from tinytown.store.client import Redis
from tinytown.store.keys import Keys
from tinytown.store.records import (
    DELETE,
    WARNINGS_KEPT,
    Conflict,
    GuardFailed,
    Op,
    Store,
    Warnings,
    encode_ops,
)
from tinytown.store.replies import reply_waiter
from tinytown.store.server import EmbeddedServer

from .faults import ReplyDropper


@pytest.fixture
async def store(redis_server: EmbeddedServer) -> AsyncIterator[Store]:
    redis = Redis(redis_server.url)
    keys = Keys(f"t-{uuid.uuid4().hex[:12]}")
    try:
        yield Store(redis, keys)
    finally:
        cursor = "0"
        while True:
            cursor, found = await redis.execute("SCAN", cursor, "MATCH", keys.pattern)
            if found:
                await redis.execute("DEL", *found)
            if cursor == "0":
                break
        await redis.aclose()


async def snapshot(store: Store) -> dict[str, object]:
    """Every key of the test town with its type and a dump of its value."""
    out: dict[str, object] = {}
    cursor = "0"
    while True:
        cursor, found = await store.redis.execute("SCAN", cursor, "MATCH", store.keys.pattern)
        for key in found:
            kind = await store.redis.execute("TYPE", key)
            if kind == "string":
                out[key] = await store.redis.execute("GET", key)
            elif kind == "list":
                out[key] = await store.redis.execute("LRANGE", key, 0, -1)
            elif kind == "hash":
                out[key] = await store.redis.execute("HGETALL", key)
            elif kind == "zset":
                out[key] = await store.redis.execute("ZRANGE", key, 0, -1, "WITHSCORES")
            elif kind == "stream":
                out[key] = await store.redis.execute("XLEN", key)
            else:
                out[key] = kind
        if cursor == "0":
            return out


# -- apply ---------------------------------------------------------------------------------


async def test_apply_creates_when_absent(store: Store) -> None:
    task = Task.new("create me")
    key = store.keys.task(task.id)
    await store.apply(
        key,
        expected=None,
        new=dumps(task),
        ops=[["ZADD", store.keys.tasks, "1", task.id]],
    )
    assert await store.get(Task, key) == task
    assert await store.redis.execute("ZSCORE", store.keys.tasks, task.id) == "1"


async def test_apply_expected_none_refuses_existing_key(store: Store) -> None:
    task = Task.new("original")
    key = store.keys.task(task.id)
    await store.redis.execute("SET", key, dumps(task))
    before = await snapshot(store)
    with pytest.raises(Conflict):
        await store.apply(
            key,
            expected=None,
            new=dumps(attrs.evolve(task, description="overwritten")),
            ops=[["RPUSH", store.keys.backlog, task.id]],
        )
    assert await snapshot(store) == before
    assert (await store.get(Task, key)) == task


async def test_apply_compare_and_set(store: Store) -> None:
    task = Task.new("v1")
    key = store.keys.task(task.id)
    raw1 = dumps(task)
    await store.redis.execute("SET", key, raw1)
    v2 = attrs.evolve(task, description="v2")
    await store.apply(key, expected=raw1, new=dumps(v2))
    assert await store.get(Task, key) == v2
    # The old value no longer matches: refused, nothing changes.
    with pytest.raises(Conflict):
        await store.apply(
            key, expected=raw1, new=dumps(attrs.evolve(task, description="v3")), ops=[]
        )
    assert await store.get(Task, key) == v2
    # expected on an absent key is a conflict too.
    with pytest.raises(Conflict):
        await store.apply(store.keys.task("missing"), expected=raw1, new="x")
    assert await store.redis.execute("EXISTS", store.keys.task("missing")) == 0


async def test_apply_any_and_delete(store: Store) -> None:
    key = store.keys.task("t1")
    await store.apply(key, new='{"a":1}')  # expected '*': no check
    assert await store.get_raw(key) == '{"a":1}'
    await store.apply(key, new='{"a":2}')
    assert await store.get_raw(key) == '{"a":2}'
    await store.apply(key, expected='{"a":2}', new=DELETE, ops=[["HDEL", store.keys.agents, "x"]])
    assert await store.get_raw(key) is None
    # new='' leaves the record alone and only runs ops.
    await store.redis.execute("SET", key, "keep")
    await store.apply(key, ops=[["HSET", store.keys.meta, "k", "v"]])
    assert await store.get_raw(key) == "keep"
    assert await store.redis.execute("HGET", store.keys.meta, "k") == "v"


async def test_guard_failure_changes_nothing(store: Store) -> None:
    key = store.keys.agent("a1")
    await store.redis.execute("HSET", store.keys.agents, "taken", "someone")
    await store.redis.execute("SET", key, "old")
    before = await snapshot(store)
    with pytest.raises(GuardFailed) as info:
        await store.apply(
            key,
            expected="old",
            new="new",
            ops=[
                ["HSET", store.keys.agents, "free", "a1"],
                ["RPUSH", store.keys.backlog, "x"],
            ],
            guards=[
                (["HEXISTS", store.keys.agents, "free"], 0),  # passes
                (["HEXISTS", store.keys.agents, "taken"], 0),  # fails
                (["EXISTS", store.keys.backlog], 1),  # also fails, but is never reached
            ],
        )
    assert info.value.index == 1  # 0-based: the second guard
    assert await snapshot(store) == before
    assert await store.get_raw(key) == "old"


async def test_guards_compare_strings_and_numbers(store: Store) -> None:
    key = store.keys.agent("a1")
    await store.redis.execute("HSET", store.keys.agents, "bob", "id-1")
    await store.apply(
        key,
        expected=None,
        new="created",
        guards=[
            (["HGET", store.keys.agents, "bob"], "id-1"),
            (["HLEN", store.keys.agents], 1),
            (["EXISTS", key], 0),
        ],
    )
    assert await store.get_raw(key) == "created"
    with pytest.raises(GuardFailed) as info:
        await store.apply(key, guards=[(["HGET", store.keys.agents, "bob"], "id-2")], new="x")
    assert info.value.index == 0
    assert await store.get_raw(key) == "created"


async def test_conflict_is_checked_before_guards(store: Store) -> None:
    key = store.keys.task("t")
    await store.redis.execute("SET", key, "cur")
    with pytest.raises(Conflict):
        await store.apply(key, expected="other", guards=[(["EXISTS", key], 0)], new="x")


async def test_ops_run_with_the_write(store: Store) -> None:
    task = Task.new("with ops")
    key = store.keys.task(task.id)
    msg = Message.new("supervisor", "a1", Ping(), priority=Priority.URGENT)
    ops: list[Op] = [
        ["ZADD", store.keys.tasks, "5", task.id],
        ["RPUSH", store.keys.backlog, task.id],
        *store.deliver_ops(msg),
    ]
    await store.apply(key, expected=None, new=dumps(task), ops=ops)
    assert await store.get(Task, key) == task
    assert await store.redis.execute("LRANGE", store.keys.backlog, 0, -1) == [task.id]
    inbox = await store.redis.execute("LRANGE", store.keys.inbox("a1"), 0, -1)
    assert [loads(Message, raw) for raw in inbox] == [msg]
    events = await store.redis.execute("XRANGE", store.keys.events, "-", "+")
    assert len(events) == 1
    fields = events[0][1]
    assert dict(zip(fields[::2], fields[1::2], strict=True))["kind"] == "message"


async def test_apply_is_atomic_for_readers(store: Store) -> None:
    """A reader never sees the record written without its ops (one script call)."""
    key = store.keys.task("t")
    seen_torn = False
    done = False

    async def reader() -> None:
        nonlocal seen_torn
        while not done:
            raw, count = await store.redis.pipeline([["GET", key], ["LLEN", store.keys.backlog]])
            if raw is not None and int(raw) != count:
                seen_torn = True
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        for i in range(1, 51):
            await store.apply(key, new=str(i), ops=[["RPUSH", store.keys.backlog, str(i)]])
        done = True
    assert not seen_torn
    assert await store.get_raw(key) == "50"


# -- update --------------------------------------------------------------------------------


async def test_update_retries_on_concurrent_change(store: Store) -> None:
    task = Task.new("contended")
    key = store.keys.task(task.id)
    await store.redis.execute("SET", key, dumps(task))
    calls: list[Task] = []

    async def change(current: Task) -> tuple[Task, list[Op]]:
        calls.append(current)
        if len(calls) == 1:
            # Someone else changes the record between our read and our write.
            theirs = attrs.evolve(current, tags=(*current.tags, "theirs"))
            await store.redis.execute("SET", key, dumps(theirs))
        mine = current.transition("assign", assigned_to="agent-1")
        return mine, [["RPUSH", store.keys.inbox("agent-1"), mine.id]]

    result = await store.update(Task, key, change, missing=lambda: NotFoundError("gone"))
    assert len(calls) == 2
    assert calls[1].tags == ("theirs",)
    final = await store.get(Task, key)
    assert final == result
    assert final is not None
    assert final.tags == ("theirs",)  # their change survived
    assert final.state is TaskState.ASSIGNED  # and ours applied on top
    assert final.assigned_to == "agent-1"
    # The ops ran once, with the successful write only.
    assert await store.redis.execute("LRANGE", store.keys.inbox("agent-1"), 0, -1) == [task.id]


async def test_update_with_sync_change(store: Store) -> None:
    task = Task.new("sync")
    key = store.keys.task(task.id)
    await store.redis.execute("SET", key, dumps(task))
    result = await store.update(
        Task,
        key,
        lambda t: (attrs.evolve(t, result="done"), []),
        missing=lambda: NotFoundError("gone"),
    )
    assert result.result == "done"
    assert (await store.get(Task, key)) == result


async def test_update_missing_record(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no such task"):
        await store.update(
            Task,
            store.keys.task("nope"),
            lambda t: (t, []),
            missing=lambda: NotFoundError("no such task"),
        )


async def test_update_change_may_abort(store: Store) -> None:
    task = Task(id="t1", description="done already", state=TaskState.COMPLETED)
    key = store.keys.task(task.id)
    raw = dumps(task)
    await store.redis.execute("SET", key, raw)
    with pytest.raises(InvalidTransitionError):
        await store.update(
            Task,
            key,
            lambda t: (t.transition("assign"), [["RPUSH", store.keys.backlog, "x"]]),
            missing=lambda: NotFoundError("gone"),
        )
    assert await store.get_raw(key) == raw
    assert await store.redis.execute("EXISTS", store.keys.backlog) == 0


async def test_update_malformed_record_raises(store: Store) -> None:
    key = store.keys.task("bad")
    await store.redis.execute("SET", key, "{not json")
    with pytest.raises(MalformedRecordError, match="task") as info:
        await store.update(Task, key, lambda t: (t, []), missing=lambda: NotFoundError("x"))
    assert key in str(info.value)
    assert await store.get_raw(key) == "{not json"


# -- reads ---------------------------------------------------------------------------------


async def test_get(store: Store) -> None:
    task = Task.new("read me")
    key = store.keys.task(task.id)
    assert await store.get(Task, key) is None
    await store.redis.execute("SET", key, dumps(task))
    assert await store.get(Task, key) == task
    await store.redis.execute("SET", key, '{"id": "x"}')
    with pytest.raises(MalformedRecordError, match="description"):
        await store.get(Task, key)


async def test_mget_skips_malformed_and_absent(store: Store) -> None:
    good = [Task.new(f"task {i}") for i in range(3)]
    for task in good:
        await store.redis.execute("SET", store.keys.task(task.id), dumps(task))
    bad_key = store.keys.task("bad")
    await store.redis.execute("SET", bad_key, '{"id": "bad", "state": "pending"}')
    keys = [
        store.keys.task(good[0].id),
        bad_key,
        store.keys.task("absent"),
        store.keys.task(good[1].id),
        store.keys.task(good[2].id),
    ]
    assert list(store.warnings) == []
    assert await store.mget(Task, keys) == good
    assert len(store.warnings) == 1
    warning = store.warnings[0]
    assert bad_key in warning
    assert "task" in warning.lower()
    assert await store.mget(Task, []) == []
    assert len(store.warnings) == 1


async def test_run_ops(store: Store) -> None:
    await store.run_ops([["HSET", store.keys.meta, "a", "1"], ["RPUSH", store.keys.control, "c"]])
    assert await store.redis.execute("HGET", store.keys.meta, "a") == "1"
    assert await store.redis.execute("LRANGE", store.keys.control, 0, -1) == ["c"]
    await store.run_ops([])  # nothing to do is fine


# -- lost replies ----------------------------------------------------------------------------


@pytest.fixture
async def dropper(redis_server: EmbeddedServer) -> AsyncIterator[ReplyDropper]:
    where = Path(tempfile.mkdtemp(prefix="tt-proxy-"))
    try:
        async with ReplyDropper(
            redis_server.url.removeprefix("unix://"), where / "p.sock"
        ).running() as proxy:
            yield proxy
    finally:
        shutil.rmtree(where, ignore_errors=True)


@pytest.fixture
async def lossy(dropper: ReplyDropper, store: Store) -> AsyncIterator[Store]:
    """The test town's store as the runtime has it (reconnect on), through the proxy."""
    redis = Redis(dropper.url, reconnect=True)
    lossy = Store(redis, store.keys)
    await lossy.run_ops([["HSET", store.keys.meta, "warm", "1"]])  # APPLY is loaded
    try:
        yield lossy
    finally:
        await redis.aclose()


async def test_update_after_a_lost_reply_of_a_write_that_happened(
    lossy: Store, dropper: ReplyDropper
) -> None:
    task = Task.new("lost reply")
    key = lossy.keys.task(task.id)
    await lossy.redis.execute("SET", key, dumps(task))
    calls = 0

    def change(current: Task) -> tuple[Task, list[Op]]:
        nonlocal calls
        calls += 1
        new = current.transition("assign", assigned_to="agent-1")
        return new, [["RPUSH", lossy.keys.inbox("agent-1"), new.id]]

    dropper.drop_next_reply()
    result = await lossy.update(Task, key, change, missing=lambda: NotFoundError("gone"))
    assert dropper.dropped == 1
    assert calls == 1  # settled from the record, not run again
    assert await lossy.get(Task, key) == result
    assert await lossy.redis.execute("LRANGE", lossy.keys.inbox("agent-1"), 0, -1) == [task.id]


async def test_apply_create_after_a_lost_reply_is_not_a_conflict(
    lossy: Store, dropper: ReplyDropper
) -> None:
    task = Task.new("create, reply lost")
    key = lossy.keys.task(task.id)
    dropper.drop_next_reply()
    await lossy.apply(
        key, expected=None, new=dumps(task), ops=[["RPUSH", lossy.keys.backlog, task.id]]
    )
    assert dropper.dropped == 1
    assert await lossy.get(Task, key) == task
    assert await lossy.redis.execute("LRANGE", lossy.keys.backlog, 0, -1) == [task.id]


async def test_apply_delete_after_a_lost_reply(lossy: Store, dropper: ReplyDropper) -> None:
    key = lossy.keys.task("t")
    await lossy.redis.execute("SET", key, "old")
    dropper.drop_next_reply()
    await lossy.apply(key, expected="old", new=DELETE)
    assert await lossy.redis.execute("EXISTS", key) == 0


async def test_apply_lost_reply_then_another_writer_is_a_conflict(
    lossy: Store, store: Store, dropper: ReplyDropper
) -> None:
    key = lossy.keys.task("t")
    await lossy.redis.execute("SET", key, "v1")

    async def theirs() -> None:
        await store.redis.execute("SET", key, "v3")

    dropper.drop_next_reply(b"EVALSHA", before_close=theirs)
    with pytest.raises(Conflict):
        await lossy.apply(key, expected="v1", new="v2", ops=[["RPUSH", lossy.keys.backlog, "x"]])
    # Ours ran (once), theirs came after: the caller re-reads and decides.
    assert await lossy.redis.execute("LRANGE", lossy.keys.backlog, 0, -1) == ["x"]
    assert await lossy.get_raw(key) == "v3"


async def test_run_ops_after_a_lost_reply_raises_and_never_runs_twice(
    lossy: Store, dropper: ReplyDropper
) -> None:
    dropper.drop_next_reply()
    with pytest.raises(ReplyLostError):
        await lossy.run_ops([["RPUSH", lossy.keys.control, "request"]])
    assert await lossy.redis.execute("LRANGE", lossy.keys.control, 0, -1) == ["request"]
    # An unconditional apply ('*') cannot tell either.
    dropper.drop_next_reply()
    with pytest.raises(ReplyLostError):
        await lossy.apply(lossy.keys.task("t"), new="x")
    assert await lossy.get_raw(lossy.keys.task("t")) == "x"


async def test_apply_lost_before_it_ran_runs_it_once(
    lossy: Store, store: Store, redis_server: EmbeddedServer
) -> None:
    """Held by CLIENT PAUSE and killed: the script never ran; the record still holds the
    expected value, so apply runs it again, once."""
    key = lossy.keys.task("t")
    await lossy.redis.execute("SET", key, "v1")
    conn_id = await lossy.redis.execute("CLIENT", "ID")
    admin = Redis(redis_server.url)
    done = trio.Event()

    async def write() -> None:
        await lossy.apply(key, expected="v1", new="v2", ops=[["RPUSH", lossy.keys.backlog, "x"]])
        done.set()

    try:
        await admin.execute("CLIENT", "PAUSE", 20_000, "WRITE")
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                while "b" not in _client_field(
                    await admin.execute("CLIENT", "LIST", "ID", conn_id), "flags"
                ):
                    await trio.sleep(0.005)
                await admin.execute("CLIENT", "KILL", "ID", conn_id)
                await admin.execute("CLIENT", "UNPAUSE")
    finally:
        await admin.execute("CLIENT", "UNPAUSE")
        await admin.aclose()
    assert done.is_set()
    assert await lossy.get_raw(key) == "v2"
    assert await lossy.redis.execute("LRANGE", lossy.keys.backlog, 0, -1) == ["x"]


def _client_field(info: str, name: str) -> str:
    fields = dict(p.split("=", 1) for p in info.split() if "=" in p)
    return fields.get(name, "")


# -- bounded warnings ------------------------------------------------------------------------


def test_warnings_are_bounded_and_counted() -> None:
    warnings = Warnings()
    for i in range(WARNINGS_KEPT + 50):
        warnings.append(f"w{i}")
    assert len(warnings) == WARNINGS_KEPT
    assert warnings.total == WARNINGS_KEPT + 50
    assert warnings.dropped == 50
    assert warnings[0] == "w50" and warnings[-1] == f"w{WARNINGS_KEPT + 49}"  # newest kept
    warnings.clear()  # front ends clear what they reported
    assert list(warnings) == [] and warnings.total == WARNINGS_KEPT + 50


async def test_store_warnings_stay_bounded(store: Store) -> None:
    key = store.keys.task("bad")
    await store.redis.execute("SET", key, "{not json")
    for _ in range(WARNINGS_KEPT + 5):
        assert await store.mget(Task, [key]) == []
    assert len(store.warnings) == WARNINGS_KEPT
    assert store.warnings.total == WARNINGS_KEPT + 5


# -- encode once -----------------------------------------------------------------------------


def test_long_arguments_travel_outside_the_ops_json() -> None:
    message = Message.new("supervisor", "a1", Ping())
    payload = "x" * 500 + '"quoted" ✓'
    blobs: list[str | bytes] = []
    encoded = encode_ops([["RPUSH", "k", payload], ["LTRIM", "k", -5, -1]], blobs)
    assert blobs == [payload]
    assert json.loads(encoded) == [["RPUSH", "k", [1]], ["LTRIM", "k", "-5", "-1"]]
    assert payload not in encoded  # not escaped into the JSON a second time
    assert dumps(message)  # (records still encode themselves once, in dumps)


async def test_long_arguments_arrive_intact(store: Store) -> None:
    long_text = ('héllo "quoted" \\ back ✓ ' * 40) + "\0 nul"
    short = "s"
    await store.run_ops(
        [
            ["RPUSH", store.keys.backlog, long_text, short, long_text + "2"],
            ["HSET", store.keys.meta, "long", long_text, "n", 5],
        ]
    )
    assert await store.redis.execute("LRANGE", store.keys.backlog, 0, -1) == [
        long_text,
        short,
        long_text + "2",
    ]
    assert await store.redis.execute("HGET", store.keys.meta, "long") == long_text
    assert await store.redis.execute("HGET", store.keys.meta, "n") == "5"


async def test_connection_accessors(redis_server: EmbeddedServer) -> None:
    redis = Redis(redis_server.url)
    store = Store(redis, Keys(f"t-{uuid.uuid4().hex[:12]}"))
    assert store.describe() == redis_server.url
    assert store.reconnect is False
    store.reconnect = True
    assert redis.reconnect is True
    assert store.reconnected is redis.reconnected
    await store.events.last_id()  # opens the shared connection
    shared = redis._shared
    assert shared is not None
    await store.aclose()
    assert redis._idle == [] and redis._shared is None and shared.broken


async def test_reply_waiter(store: Store) -> None:
    async with reply_waiter(store) as wait:
        with trio.fail_after(5):
            assert await wait("r1", 0.05) is None

            async def answer() -> None:
                await store.run_ops([["RPUSH", store.keys.reply("r1"), '{"ok": true}']])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer)
                assert await wait("r1", 5) == '{"ok": true}'
    assert await store.redis.execute("EXISTS", store.keys.reply("r1")) == 0
