"""The model's own converter (model/converter.py): the generic rules besides the record
round trips of test_wire_format.py, and that importing the model needs no cattrs."""

from __future__ import annotations

import enum
import json
import subprocess
import sys
import threading
from typing import Any, Literal

import attrs
import pytest

from tinytown.model import Agent, Budget, Task, Usage, converter, dumps, loads
from tinytown.model.converter import Converter


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Inner:
    n: int
    label: str | None = None


@attrs.frozen
class Outer:
    name: str
    inners: list[Inner] = attrs.field(factory=list)
    by_key: dict[str, Inner] = attrs.field(factory=dict)
    pair: tuple[int, str] = (0, "")
    tags: tuple[str, ...] = ()
    color: Color = Color.RED
    mode: Literal["a", "b"] = "a"
    optional: Inner | None = None
    anything: Any = None
    ratio: float = 0.0
    flag: bool = False


def test_nested_records_round_trip() -> None:
    value = Outer(
        "x",
        [Inner(1), Inner(2, "two")],
        {"k": Inner(3)},
        (4, "four"),
        ("p", "q"),
        Color.BLUE,
        "b",
        Inner(5),
        {"free": [1, {"form": None}]},
        0.5,
        True,
    )
    plain = converter.unstructure(value)
    assert plain == {
        "name": "x",
        "inners": [{"n": 1, "label": None}, {"n": 2, "label": "two"}],
        "by_key": {"k": {"n": 3, "label": None}},
        "pair": [4, "four"],
        "tags": ["p", "q"],
        "color": "blue",
        "mode": "b",
        "optional": {"n": 5, "label": None},
        "anything": {"free": [1, {"form": None}]},
        "ratio": 0.5,
        "flag": True,
    }
    assert converter.structure(json.loads(json.dumps(plain)), Outer) == value


def test_structure_fills_defaults_ignores_unknown_keys_and_converts_scalars() -> None:
    got = converter.structure({"name": 7, "ratio": 1, "unknown": "ignored"}, Outer)
    assert got == Outer("7", ratio=1.0)
    assert type(got.ratio) is float


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, KeyError),  # a required field missing
        ({"name": "x", "color": "green"}, ValueError),  # not an enum value
        ({"name": "x", "mode": "c"}, ValueError),  # not one of the literal's values
        ({"name": "x", "pair": [1]}, ValueError),  # a fixed tuple of the wrong length
        ({"name": "x", "inners": [{"label": "no n"}]}, KeyError),  # nested: missing
        ({"name": "x", "ratio": None}, TypeError),  # None where a float must be
    ],
)
def test_structure_refuses_what_does_not_fit(data: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        converter.structure(data, Outer)


def test_a_union_without_a_hook_is_refused_and_a_hook_replaces_the_rules() -> None:
    own = Converter()
    with pytest.raises(TypeError, match="union"):
        own.structure(1, int | str)
    own.register_structure_hook(Inner, lambda data, _: Inner(int(data)))
    own.register_unstructure_hook(Inner, lambda inner: inner.n)
    assert own.structure([1, 2], list[Inner]) == [Inner(1), Inner(2)]
    assert own.unstructure({"a": Inner(3)}) == {"a": 3}


@attrs.frozen
class Node:
    name: str
    children: list[Node] = attrs.field(factory=list)


def test_a_type_that_contains_itself() -> None:
    data = {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]}
    assert Converter().structure(data, Node) == Node("a", [Node("b", [Node("c")])])


def test_a_thread_reading_while_another_makes_the_plan_waits_for_it() -> None:
    """Another thread asking for a type while its plan is being made gets the finished
    plan, never the stand-in used for types that contain themselves (which, called before
    the plan exists, would recurse for ever)."""
    results: list[object] = []

    def other() -> None:
        try:
            results.append(own.structure({"n": 1}, Inner))
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    class Slow(Converter):
        def _make_structurer(self, tp: Any) -> Any:
            if tp is Inner and not results:
                reader = threading.Thread(target=other)
                reader.start()
                reader.join(0.2)  # the reader waits for the plan (or failed at once, before)
                threads.append(reader)
            return super()._make_structurer(tp)

    threads: list[threading.Thread] = []
    own = Slow()
    assert own.structure({"n": 2}, Inner) == Inner(2)
    threads[0].join(10)
    assert results == [Inner(1)]


def test_records_keep_their_wire_format() -> None:
    """Field order and spellings are what Redis holds (a compare-and-set compares raw JSON)."""
    agent = Agent(
        id="a1",
        name="w1",
        nickname="Nick",
        cli="true",
        created_at="t0",
        last_heartbeat="t1",
        budget=Budget(usd=2.5),
    )
    raw = dumps(agent)
    assert raw.startswith('{"id":"a1","name":"w1","nickname":"Nick","cli":"true","role_id":null')
    assert '"usage":{"input_tokens":0,"output_tokens":0,"cached_tokens":0,"cost_usd":0.0' in raw
    assert '"budget":{"usd":2.5,"tokens":null}' in raw
    assert dumps(loads(Agent, raw)) == raw
    task = Task.new("do it", tags=["x"])
    assert json.loads(dumps(task))["tags"] == ["x"]
    assert loads(Task, dumps(task)) == task
    assert converter.structure({"cost_usd": 1}, Usage) == Usage(cost_usd=1.0)


def test_importing_the_model_imports_no_cattrs() -> None:
    code = "import sys, tinytown.model; print(sorted(m for m in sys.modules if 'cattrs' in m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
