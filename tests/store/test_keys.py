"""Key names and town-name validation (SPEC §3)."""

from __future__ import annotations

import fnmatch

import pytest

from tinytown.errors import InvalidNameError
from tinytown.model import new_id
from tinytown.store.keys import Keys, validate_town_name

BAD_TOWN_NAMES = [
    "",
    "a:b",
    ":a",
    "a:",
    "*",
    "a*",
    "a?",
    "?",
    "[x]",
    "a[b]c",
    "a b",
    " a",
    "a ",
    "a\tb",
    "a\n",
    "\na",
    "-a",
    ".a",
    "_a",
    "a/b",
    "a\\b",
    "a^b",
    "é",
    "x" * 65,
]
GOOD_TOWN_NAMES = ["a", "A", "0", "my-town", "my_town", "my.town", "Town-2.0_x", "x" * 64]


@pytest.mark.parametrize("name", BAD_TOWN_NAMES)
def test_bad_town_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidNameError, match="not allowed"):
        validate_town_name(name)
    with pytest.raises(InvalidNameError):
        Keys(name)


@pytest.mark.parametrize("name", GOOD_TOWN_NAMES)
def test_good_town_names_are_accepted(name: str) -> None:
    assert validate_town_name(name) == name
    keys = Keys(name)
    assert keys.town == name
    assert keys.prefix == f"tt:{name}:"


def test_documented_key_forms() -> None:
    keys = Keys("demo")
    task_id, agent_id = new_id(), new_id()
    assert keys.task(task_id) == f"tt:demo:task:{task_id}"
    assert keys.agent(agent_id) == f"tt:demo:agent:{agent_id}"
    assert keys.inbox(agent_id) == f"tt:demo:inbox:{agent_id}"


def all_keys(keys: Keys) -> list[str]:
    """One example of every key a town uses."""
    some = new_id()
    return [
        keys.task(some),
        keys.agent(some),
        keys.inbox(some),
        keys.inflight(some),
        keys.reply(some),
        keys.agents,
        keys.tasks,
        keys.plan_ids,
        keys.backlog,
        keys.events,
        keys.mail,
        keys.runtime,
        keys.control,
        keys.wake,
        keys.meta,
    ]


def test_every_key_lives_under_the_town_prefix() -> None:
    keys = Keys("demo")
    examples = all_keys(keys)
    assert len(set(examples)) == len(examples)  # no two kinds of key share a name
    for key in examples:
        assert key.startswith("tt:demo:")
        assert fnmatch.fnmatchcase(key, keys.pattern), key


def test_pattern_has_no_glob_characters_in_the_town_part() -> None:
    for name in GOOD_TOWN_NAMES:
        pattern = Keys(name).pattern
        assert pattern == f"tt:{name}:*"
        assert not set(pattern[:-1]) & set("*?[]\\")


@pytest.mark.parametrize("other", ["ab", "aa", "ba", "A", "a.b", "a-b", "a_b", "a0", "b"])
def test_pattern_does_not_reach_other_towns(other: str) -> None:
    mine, theirs = Keys("a"), Keys(other)
    for key in all_keys(theirs):
        assert not fnmatch.fnmatchcase(key, mine.pattern), key
    for key in all_keys(mine):
        assert not fnmatch.fnmatchcase(key, theirs.pattern), key


def test_town_a_colon_b_cannot_exist() -> None:
    """``tt:a:b:...`` would fall under town ``a``'s pattern, so ``a:b`` must be refused."""
    assert fnmatch.fnmatchcase("tt:a:b:task:1", Keys("a").pattern)
    with pytest.raises(InvalidNameError):
        Keys("a:b")


@pytest.mark.parametrize("kind", ["agent", "task", "inbox", "urgent"])
def test_no_town_reaches_the_old_global_layout(kind: str) -> None:
    """The old global keys ``tt:<kind>:<uuid>`` (read by ``tt migrate``, never to be
    touched by a town) must not fall under any town's SCAN pattern, e.g. during ``tt reset``
    or an export: a town may not be named after an old key kind."""
    legacy = f"tt:{kind}:{new_id()}"
    try:
        keys = Keys(kind)
    except InvalidNameError:
        return
    assert not fnmatch.fnmatchcase(legacy, keys.pattern), (
        f"town {kind!r} would SCAN (and reset/export) the legacy key {legacy}"
    )


def test_glob_town_names_cannot_match_other_towns() -> None:
    """A town named ``*`` or ``a?`` would be a pattern over every town: refused."""
    for name in ("*", "a?", "[ab]", "a*"):
        with pytest.raises(InvalidNameError):
            Keys(name)
