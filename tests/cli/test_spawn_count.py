"""``tt spawn NAME --count N``: many agents in one atomic step (AgentService.spawn_many)."""

from __future__ import annotations

from functools import partial

from tests.cli.clihelp import ok, ok_json, parallel, user_error
from tests.conftest import TtRunner
from tinytown.services.town import Town


async def test_count_spawns_numbered_agents_in_one_step(tt: TtRunner, town: Town) -> None:
    out = ok(tt("spawn", "w", "--count", "3", "--role", "tester"))
    assert out.startswith("Spawned 3 agent(s) w-1 .. w-3, cli ")
    assert "they start with 'tt run'" in out
    agents = {a.name: a for a in await town.agents.list()}
    assert sorted(agents) == ["w-1", "w-2", "w-3"]
    assert {a.role_id for a in agents.values()} == {"tester"}
    listed = ok_json(tt("spawn", "j", "--count", "2", "--json"))
    assert [a["name"] for a in listed] == ["j-1", "j-2"]


async def test_bad_count_requests_change_nothing(tt: TtRunner, town: Town) -> None:
    await town.agents.spawn("t-2")
    zero, mixed, taken = parallel(
        partial(tt, "spawn", "z", "--count", "0"),
        partial(tt, "spawn", "m", "--count", "2", "--max-rounds", "3", "--scope", "x"),
        partial(tt, "spawn", "t", "--count", "3"),
    )
    assert user_error(zero, 2) == "--count needs 1 or more agents."
    assert user_error(mixed, 2) == (
        "--count spawns with --cli and --role only, not --max-rounds, --scope."
    )
    assert user_error(taken) == "An agent named 't-2' already exists."
    assert [a.name for a in await town.agents.list()] == ["t-2"]  # all or nothing
