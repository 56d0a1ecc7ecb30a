"""``tt completion bash|zsh|fish``: scripts generated from the parser, checked by the shells
themselves (bash always; zsh and fish when installed), and bash/fish completing for real."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.clihelp import RunIn
from tests.conftest import TtRunner
from tinytown.cli.commands.completion import SHELLS, walk
from tinytown.cli.parser import build_parser
from tinytown.model import BUILTIN_ROLES
from tinytown.store.server import EmbeddedServer


@pytest.fixture
def shell_env(tt_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The environment of a shell whose ``tt`` is this checkout's (for the call-backs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "tt"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tinytown "$@"\n')
    shim.chmod(0o755)
    return {**tt_env, "PATH": f"{bin_dir}:{tt_env.get('PATH', '/usr/bin:/bin')}"}


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each shell's script, as ``tt completion SHELL`` prints it (no town needed), in tmp."""
    directory = tmp_path_factory.mktemp("scripts")
    out = {}
    for shell in SHELLS:
        done = subprocess.run(
            [sys.executable, "-m", "tinytown", "completion", shell],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        out[shell] = directory / f"tt.{shell}"
        out[shell].write_text(done.stdout)
    return out


def need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed: its script is not checked here")
    return path


def test_scripts_contain_every_command(scripts: dict[str, Path]) -> None:
    commands = walk(build_parser())
    assert len(commands) > 40  # the walk reached the subcommands
    for shell, path in scripts.items():
        text = path.read_text()
        for command in commands:
            for name in command.commands:
                assert name in text, (shell, command.path, name)
            for option in command.options:
                for flag in option.names:
                    assert flag in text, (shell, command.path, flag)


@pytest.mark.parametrize("shell", SHELLS)
def test_scripts_are_valid_for_their_shell(shell: str, scripts: dict[str, Path]) -> None:
    done = subprocess.run([need(shell), "-n", str(scripts[shell])], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def bash_complete(script: Path, env: dict[str, str], cwd: Path, line: str) -> list[str]:
    """What bash offers for Tab at the end of ``line`` (COMP_WORDS as bash splits it)."""
    words = line.split()
    if line.endswith(" "):
        words.append("")
    array = " ".join(f"'{w}'" for w in words)
    program = (
        f"source {script}; COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; _tt;"
        ' printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "--norc", "-c", program], env=env, cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return sorted(w for w in done.stdout.splitlines() if w)


def test_bash_completes_commands_options_and_values(
    scripts: dict[str, Path], shell_env: dict[str, str], town_dir: Path, tt: TtRunner
) -> None:
    assert tt("spawn", "alice").returncode == 0
    assert tt("spawn", "bob").returncode == 0

    def complete(line: str) -> list[str]:
        return bash_complete(scripts["bash"], shell_env, town_dir, line)

    assert complete("tt sp") == ["spawn"]
    assert "completion" in complete("tt ")
    assert complete("tt task s") == ["show"]
    assert complete("tt completion ") == ["bash", "fish", "zsh"]
    assert complete("tt spawn x --mode f") == ["forkedcontext", "fresh"]
    assert complete("tt spawn x --role ") == sorted(BUILTIN_ROLES)
    assert complete("tt spawn x --ro") == ["--role"]
    assert {"--json", "--help"} <= set(complete("tt task show --"))
    # Values from the town, asked of `tt completion --values` when Tab is pressed.
    assert complete("tt spawn x --cli scr") == ["scripted"]  # [agent_clis.scripted]
    assert complete("tt kill ") == ["alice", "bob"]
    assert complete("tt send --urgent ") == ["alice", "bob", "supervisor"]
    assert complete("tt spawn x --parent a") == ["alice"]
    # An option's value is not taken for a command or positional.
    assert complete("tt send --urgent alice ") == []
    assert complete("tt -t ") == sorted(
        p.name for p in town_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )


def test_fish_completes_commands_options_and_values(
    scripts: dict[str, Path], shell_env: dict[str, str], town_dir: Path, tt: TtRunner
) -> None:
    fish = need("fish")
    assert tt("spawn", "alice").returncode == 0

    def complete(line: str) -> list[str]:
        program = f"source {scripts['fish']}; complete -C '{line}'"
        done = subprocess.run(
            [fish, "--no-config", "-c", program],
            env=shell_env,
            cwd=town_dir,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return sorted(w.split("\t")[0] for w in done.stdout.splitlines() if w)

    assert complete("tt sp") == ["spawn"]
    assert complete("tt task s") == ["show"]
    assert complete("tt spawn x --mode f") == ["forkedcontext", "fresh"]
    assert "--role" in complete("tt spawn x --")
    assert complete("tt spawn x --cli scr") == ["scripted"]
    assert complete("tt kill ") == ["alice"]
    assert complete("tt send ") == ["alice", "supervisor"]


def test_zsh_script_locates_the_word_being_completed(
    scripts: dict[str, Path], shell_env: dict[str, str], town_dir: Path
) -> None:
    """zsh's completion system needs a terminal; its functions are checked one by one."""
    zsh = need("zsh")
    program = (
        f"compdef() {{ :; }}; source {scripts['zsh']};"
        " _tt_locate spawn x; _tt_kind --cli ''; _tt_kind '' --;"
        " _tt_locate task; _tt_kind task s; _tt_commands task;"
        " _tt_locate send --urgent alice; _tt_kind alice ''; _tt_values clis"
    )
    done = subprocess.run(
        [zsh, "-f", "-c", program], env=shell_env, cwd=town_dir, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["clis", "options", "commands"]
    assert lines[3].split()[:2] == ["show", "complete"]
    assert lines[4] == "any"  # send's message text: nothing to offer
    assert "scripted" in lines[5:]


def test_completion_needs_a_known_shell(tt: TtRunner) -> None:
    done = tt("completion")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "tt: Which shell? 'tt completion bash', 'zsh' or 'fish'.\n"
    done = tt("completion", "tcsh")
    assert done.returncode == 2
    assert "invalid choice: 'tcsh'" in done.stderr
    assert "Traceback" not in done.stderr


def test_values_outside_a_town_are_empty(tt_in: RunIn, tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    done = tt_in("completion", "--values", "agents", cwd=nowhere)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    done = tt_in("completion", "--values", "clis", cwd=nowhere)
    assert "claude" in done.stdout.split()


def test_values_of_a_stopped_town_never_start_its_redis(tt_in: RunIn, tmp_path: Path) -> None:
    """Tab must stay cheap and harmless: a stopped town's agents are simply not offered."""
    project = tmp_path / "project"
    project.mkdir()
    embedded: dict[str, str | None] = {"REDIS_URL": None}  # the town's own Redis
    server = EmbeddedServer(project / ".tt")
    try:
        assert tt_in("init", cwd=project, env=embedded).returncode == 0
        assert tt_in("spawn", "alice", "--cli", "true", cwd=project, env=embedded).returncode == 0
        done = tt_in("completion", "--values", "agents", cwd=project, env=embedded)
        assert (done.returncode, done.stdout) == (0, "alice\n")
        assert tt_in("down", cwd=project, env=embedded).returncode == 0
        assert not server.is_running()
        done = tt_in("completion", "--values", "recipients", cwd=project, env=embedded)
        assert (done.returncode, done.stdout, done.stderr) == (0, "supervisor\n", "")
        assert not server.is_running()
    finally:
        server.stop()
