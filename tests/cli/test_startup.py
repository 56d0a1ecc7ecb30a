"""A one-shot command imports only what it uses (issue 14: `tt send` <= 60 ms).

No timing is asserted: the tests check which modules a real `tt` process imported (trio,
tomlkit, the REPL, the MCP SDK, the other commands' modules and services), and that the
parser built for one command line is the whole parser's for that command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tinytown.cli.parser import (
    COMMANDS,
    WHOLE_PARSER,
    build_parser,
    command_parsers,
    parser_for,
)
from tinytown.services.town import Town
from tinytown.townroot import command_word

#: Runs `tt` (the program's entry point, argv from sys.argv) and writes the modules it
#: imported to the file named by argv[1]; trio stands in deferred until first used.
PROBE = """
import json, sys
out, sys.argv = sys.argv[1], ["tt", *sys.argv[2:]]
from tinytown.entry import main
code = main()
loaded = sorted(n for n, m in list(sys.modules.items()) if "__file__" in vars(m))
open(out, "w").write(json.dumps({"code": code, "modules": loaded}))
"""

#: Never imported by the hot one-shot commands.
HEAVY = (
    "trio",
    "tomlkit",
    "tomli_w",
    "prompt_toolkit",
    "mcp",
    "tinytown.repl",
    "tinytown.runtime",
    "tinytown.townhall",
    "tinytown.services.doctor",
    "tinytown.services.lifecycle",
    "tinytown.services.recovery",
    "tinytown.services.backlog",
    "tinytown.services.plans",
    "tinytown.services.mcp",
    "tinytown.services.workspace.service",
    # The round classifiers and readers (reset times, zoneinfo): only the runtime reads a
    # round; the config's check of [agent_clis.X] tables needs none of them.
    "tinytown.services.agentcli.classify",
    "tinytown.services.agentcli.results",
    "tinytown.services.agentcli.report",
    "tinytown.services.agentcli.resettime",
    "zoneinfo",
    # Scripts' SHA-1s come from CPython's own _sha1; hashlib would load OpenSSL.
    "hashlib",
    # Only starting or stopping the embedded server runs processes (store/server.py).
    "subprocess",
    "tempfile",
    # Spawning's own modules (services/agents.py imports them in spawn).
    "tinytown.services.spawn_batch",
    "tinytown.services.workspace.worktrees",
    "tinytown.services.executables",
)

#: Not imported by `tt send` and `tt task complete` (`tt status` shows spending: it does).
SPENDING = ("tinytown.services.costs", "tinytown.services.budgets")


def probe(
    code: str, tt_env: dict[str, str], town_dir: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run ``tt ARGS`` in a fresh process under the probe ``code``; what it wrote."""
    out = town_dir.parent / "probe.json"
    done = subprocess.run(
        [sys.executable, "-c", code, str(out), *args],
        cwd=town_dir,
        env=tt_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done, json.loads(out.read_text())


def imported(tt_env: dict[str, str], town_dir: Path, *args: str) -> set[str]:
    done, report = probe(PROBE, tt_env, town_dir, *args)
    assert report["code"] == 0, done.stderr
    return set(report["modules"])


def commands_of(modules: set[str]) -> set[str]:
    prefix = "tinytown.cli.commands."
    return {m.removeprefix(prefix) for m in modules if m.startswith(prefix)}


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


async def test_send_complete_and_status_import_only_their_own(
    town: Town, tt_env: dict[str, str], town_dir: Path
) -> None:
    agent = await town.agents.spawn("bob", "scripted")
    task = await town.tasks.assign(agent.id, "work")
    for args, own in [
        (["send", "bob", "hello"], {"messages"}),
        (["task", "complete", task.id], {"tasks"}),
        (["status"], {"town", "runtime"}),  # tt status shares tt stop's options module
    ]:
        modules = imported(tt_env, town_dir, *args)
        assert heavy_in(modules) == [], args
        assert commands_of(modules) == own, args
        if args[0] == "status":  # the probe does see it where it is used
            assert "tinytown.services.costs" in modules
        else:
            assert sorted(modules & set(SPENDING)) == [], args
    assert (await town.tasks.get(task.id)).state.value == "completed"
    queued, _ = await town.messages.inbox(agent.id)
    assert any(getattr(m.body, "description", None) == "hello" for m in queued)


def test_the_probe_sees_what_a_command_imports(tt_env: dict[str, str], town_dir: Path) -> None:
    """Guards the test above: the same probe does see heavy imports where they happen."""
    written = imported(tt_env, town_dir, "config", "runtime.kill_grace", "2")
    assert "tomlkit" in written  # writing the config needs it
    whole = imported(tt_env, town_dir, "completion", "bash")  # walks the whole parser
    assert commands_of(whole) >= set(COMMANDS)


def test_the_command_index_matches_what_the_modules_register() -> None:
    for module, words in COMMANDS.items():
        assert tuple(command_parsers(build_parser(modules=(module,)))) == words, module
    whole = list(command_parsers(build_parser()))
    assert whole == [w for words in COMMANDS.values() for w in words]


def _helps(parser: object, path: str = "") -> dict[str, str]:
    """Help text of every (sub)command parser under ``parser``, by command path."""
    out: dict[str, str] = {}
    for name, child in command_parsers(parser).items():  # type: ignore[arg-type]
        out[f"{path} {name}"] = child.format_help()
        out.update(_helps(child, f"{path} {name}"))
    return out


def test_one_commands_parser_is_the_whole_parsers() -> None:
    whole = _helps(build_parser())
    for words in COMMANDS.values():
        for word in words:
            own = _helps(parser_for([word, "--help"]))
            assert own, word
            assert all(whole[path] == text for path, text in own.items()), word
    assert set(command_parsers(parser_for(["send"]))) == {"send", "inbox", "events", "history"}


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["send", "bob", "hi"], "send"),
        (["-t", "dir", "status"], "status"),
        (["--town", "dir", "task", "complete", "x"], "task"),
        (["--town=dir", "status"], "status"),
        (["-tdir", "status"], "status"),
        (["--help"], None),
        (["--version"], None),
        (["-t", "dir"], None),
        ([], None),
    ],
)
def test_the_command_word(argv: list[str], word: str | None) -> None:
    assert command_word(argv) == word


def test_unknown_words_and_whole_parser_commands_get_the_whole_parser() -> None:
    everything = set(command_parsers(build_parser()))
    assert set(command_parsers(parser_for(["bogus"]))) == everything
    assert set(command_parsers(parser_for(["--help"]))) == everything
    for module in WHOLE_PARSER:
        assert set(command_parsers(parser_for([COMMANDS[module][0]]))) == everything


#: Runs `tt` like PROBE and writes the first word of every command it sent to Redis.
COMMAND_PROBE = """
import json, sys
out, sys.argv = sys.argv[1], ["tt", *sys.argv[2:]]
from tinytown.store import blocking
sent = []
roundtrip = blocking.BlockingConnection._roundtrip
def counting(self, commands, *args, **kwargs):
    sent.extend(str(c[0], "ascii") if isinstance(c[0], bytes) else c[0] for c in commands)
    return roundtrip(self, commands, *args, **kwargs)
blocking.BlockingConnection._roundtrip = counting
from tinytown.entry import main
code = main()
open(out, "w").write(json.dumps({"code": code, "sent": sent}))
"""


async def test_send_reads_the_recipients_record_not_every_agents(
    town: Town, tt_env: dict[str, str], town_dir: Path
) -> None:
    """`tt send` says whom it sent to by reading that agent's record: in a town of 10,000
    agents, listing them all (the name index, an MGET of every record) cost ~0.5 s."""
    for name in ("bob", "ann", "cid"):
        await town.agents.spawn(name, "scripted")
    done, report = probe(COMMAND_PROBE, tt_env, town_dir, "send", "bob", "hello")
    assert "to bob" in done.stdout
    sent = report["sent"]
    assert "EVALSHA" in sent  # the probe sees the send itself
    assert [c for c in sent if c.upper() in ("MGET", "HGETALL", "SCAN", "KEYS")] == []
