import re
import uuid

from tinytown.model.nicknames import NICKNAMES, nickname_for


def test_list_is_large_unique_and_well_formed() -> None:
    assert len(NICKNAMES) >= 300
    assert len(set(NICKNAMES)) == len(NICKNAMES)
    for name in NICKNAMES:
        assert re.fullmatch(r"[A-Z][a-z]+", name), name


def test_well_known_names_present() -> None:
    for name in ("Robert", "Dorothy", "Helen", "James", "Margaret", "Mary", "Mildred"):
        assert name in NICKNAMES


def test_deterministic() -> None:
    agent_id = str(uuid.uuid4())
    assert nickname_for(agent_id) == nickname_for(agent_id)
    assert nickname_for(agent_id) in NICKNAMES


def test_uses_first_eight_hex_digits() -> None:
    assert nickname_for("00000000-0000-0000-0000-000000000001") == NICKNAMES[0]
    assert nickname_for("00000005-ffff-4fff-8fff-ffffffffffff") == NICKNAMES[5]
    expected = NICKNAMES[0x1234ABCD % len(NICKNAMES)]
    assert nickname_for("1234abcd-0000-4000-8000-000000000000") == expected
    assert nickname_for("1234ABCD-9999-4999-8999-999999999999") == expected
    # Hyphens are ignored, so a bare 32-digit hex id gives the same name.
    assert nickname_for("1234abcd00004000800000000000000") == expected


def test_non_uuid_is_still_deterministic() -> None:
    assert nickname_for("supervisor") == nickname_for("supervisor")
    assert nickname_for("supervisor") in NICKNAMES
    assert nickname_for("") in NICKNAMES


def test_distribution() -> None:
    names = {nickname_for(str(uuid.uuid4())) for _ in range(2000)}
    assert len(names) >= 250


def test_candidates_start_with_own_name_and_are_deterministic() -> None:
    from itertools import islice

    from tinytown.model.nicknames import nickname_candidates

    agent_id = "00000005-ffff-4fff-8fff-ffffffffffff"
    first = list(islice(nickname_candidates(agent_id), len(NICKNAMES) + 2))
    assert first[0] == nickname_for(agent_id) == NICKNAMES[5]
    assert first[1] == NICKNAMES[6]
    assert len(set(first[: len(NICKNAMES)])) == len(NICKNAMES)  # every name once, then numbered
    assert first[len(NICKNAMES)] == f"{NICKNAMES[5]}2"
    assert first == list(islice(nickname_candidates(agent_id), len(NICKNAMES) + 2))
