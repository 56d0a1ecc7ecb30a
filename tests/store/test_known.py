"""What this process last saw of a record (store/known.py): a hint that saves the read
before a compare-and-set, never a source of truth. Round trips are counted, not timed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import attrs
import pytest

from tests.redis_commands import record_commands
from tinytown.errors import InvalidTransitionError, NotFoundError
from tinytown.model import Task, TaskState, dumps, loads
from tinytown.store.client import Redis
from tinytown.store.keys import Keys
from tinytown.store.known import KnownRecords
from tinytown.store.records import Store
from tinytown.store.server import EmbeddedServer


@pytest.fixture
async def stores(redis_server: EmbeddedServer) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one town, like two processes: each with its own known values."""
    keys = Keys(f"k-{uuid.uuid4().hex[:12]}")
    ours, theirs = Redis(redis_server.url), Redis(redis_server.url)
    try:
        yield Store(ours, keys), Store(theirs, keys)
    finally:
        await ours.aclose()
        await theirs.aclose()


def _missing() -> Exception:
    return NotFoundError("gone")


async def _written(store: Store) -> str:
    """The key of a task written by ``store`` (so its process knows the value)."""
    task = Task.new("v1")
    key = store.keys.task(task.id)
    await store.apply(key, expected=None, new=dumps(task))
    return key


def _rename(text: str):  # type: ignore[no-untyped-def]
    return lambda t: (attrs.evolve(t, description=text), [])


async def test_an_update_of_a_record_this_process_wrote_is_one_round_trip(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, _ = stores
    key = await _written(store)
    sent = record_commands(monkeypatch, store)
    await store.update(Task, key, _rename("v2"), missing=_missing)
    await store.update(Task, key, _rename("v3"), missing=_missing)
    assert [c[0] for c in sent] == ["SCRIPT", "SCRIPT"]  # two writes, no read
    assert loads(Task, await store.get_raw(key) or "").description == "v3"


async def test_a_stale_value_is_refused_and_the_change_is_made_on_the_fresh_one(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = stores
    key = await _written(store)
    # Another process changes it: what we know is now stale.
    theirs = lambda t: (attrs.evolve(t, tags=("theirs",)), [])  # noqa: E731
    await other.update(Task, key, theirs, missing=_missing)
    sent = record_commands(monkeypatch, store)
    new = await store.update(Task, key, _rename("ours"), missing=_missing)
    assert new.tags == ("theirs",) and new.description == "ours"  # both changes kept
    assert [c[0] for c in sent] == ["SCRIPT", "GET", "SCRIPT"]  # refused, read, written
    stored = loads(Task, await other.get_raw(key) or "")
    assert stored.tags == ("theirs",) and stored.description == "ours"


async def test_a_refusal_decided_on_a_stale_value_is_checked_on_a_fresh_read(
    stores: tuple[Store, Store],
) -> None:
    store, other = stores
    key = await _written(store)  # we know it pending
    await other.update(
        Task, key, lambda t: (t.transition("assign", assigned_to="a1"), []), missing=_missing
    )

    def start(t: Task) -> tuple[Task, list[list[str]]]:
        if t.assigned_to != "a1":
            raise InvalidTransitionError("not assigned to a1")
        return t.transition("start"), []

    started = await store.update(Task, key, start, missing=_missing)  # not refused
    assert started.state is TaskState.RUNNING


async def test_a_record_deleted_elsewhere_is_missing_not_recreated(
    stores: tuple[Store, Store],
) -> None:
    store, other = stores
    key = await _written(store)
    await other.redis.execute("DEL", key)
    with pytest.raises(NotFoundError):
        await store.update(Task, key, _rename("v2"), missing=_missing)
    assert await other.get_raw(key) is None


async def test_a_set_op_is_known_and_a_failed_guard_forgets_its_record(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = stores
    a, b = Task.new("a"), Task.new("b")
    ka, kb = store.keys.task(a.id), store.keys.task(b.id)
    await store.apply(ka, expected=None, new=dumps(a), ops=[["SET", kb, dumps(b)]])
    assert store.known.raw(kb) == dumps(b)  # written by an op of the same step
    await other.redis.execute("SET", kb, dumps(attrs.evolve(b, description="moved")))
    with pytest.raises(Exception, match="0"):  # GuardFailed(0): b is not what we knew
        await store.apply(ka, ops=[], guards=[(["GET", kb], dumps(b))])
    assert store.known.raw(kb) is None and store.known.raw(ka) is None
    sent = record_commands(monkeypatch, store)
    fresh = await store.update(Task, kb, _rename("again"), missing=_missing)
    assert fresh.description == "again" and [c[0] for c in sent] == ["GET", "SCRIPT"]


def test_known_records_are_bounded_least_recently_used_first() -> None:
    known = KnownRecords(size=3)
    for key in "abc":
        known.note(key, key.upper())
    assert known.record("a", str) == ("A", None)  # used: now the most recent
    known.note("d", "D")
    assert len(known) == 3
    assert known.raw("b") is None  # the least recently used went
    assert [known.raw(k) for k in "acd"] == ["A", "C", "D"]
    known.forget("a")
    assert known.raw("a") is None
