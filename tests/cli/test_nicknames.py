"""`tt spawn`: nicknames are unique within a town; a taken --nickname is refused."""

from __future__ import annotations

import json

from tests.conftest import TtRunner


def test_spawn_refuses_a_taken_nickname_and_never_repeats_one(tt: TtRunner) -> None:
    assert tt("spawn", "alice", "--nickname", "Elaine").returncode == 0
    refused = tt("spawn", "bob", "--nickname", "elaine")
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr == (
        "tt: The nickname 'elaine' is taken by agent alice; choose another.\n"
    )
    for i in range(6):
        assert tt("spawn", f"w{i}").returncode == 0
    agents = json.loads(tt("list", "--json").stdout)
    names = [a["name"] for a in agents]
    assert "bob" not in names
    nicknames = [a["nickname"].lower() for a in agents]
    assert len(nicknames) == 7 == len(set(nicknames))
