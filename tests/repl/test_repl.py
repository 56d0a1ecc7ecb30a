"""The REPL driven through prompt-toolkit's pipe input, against the real Redis."""

from __future__ import annotations

import os
import signal

import pytest
import trio
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.formatted_text import to_plain_text
from prompt_toolkit.input import PipeInput
from prompt_toolkit.output import DummyOutput

from tests.repl.conftest import Driver, Transcript
from tinytown.cli.commands.messages import broadcast_line
from tinytown.model import MessageType
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.model.message import Informational
from tinytown.repl.console import Console
from tinytown.repl.core import Repl
from tinytown.runtime.town_runtime import Runtime
from tinytown.services.town import Town


async def settle(driver: Driver) -> list[str]:
    """The lines printed since the mark, once the REPL is back at its prompt."""
    lines = driver.out.since_mark()
    await driver.command("help quit", "usage: tt quit")
    return lines


async def test_commands_change_redis(driver: Driver, town: Town) -> None:
    await driver.command("spawn alice", "Spawned alice")
    await driver.command("assign alice 'write the docs'", "Assigned task")
    (task,) = await town.tasks.list()
    alice = await town.agents.resolve("alice")
    assert task.description == "write the docs"
    assert task.assigned_to == alice.id
    await driver.command("tt list", "alice")  # a habitual 'tt' prefix is fine


async def test_an_error_is_one_line_and_the_repl_goes_on(driver: Driver) -> None:
    for line, expect in [
        ("kill nobody", "error: "),  # a TinytownError
        ("spawn", "error: the following arguments are required: NAME (see 'help spawn')"),
        ("lsit", "error: Unknown command 'lsit' (did you mean 'list'?)"),
        ("send 'unclosed", "error: Cannot read that line"),
        ("task", "error: the following arguments are required: COMMAND (see 'help task')"),
        ("run", "error: The REPL cannot host the town"),
        ("attach", "error: You are in the REPL already."),
        ("init", "error: This town exists already"),
        ("down", "error: 'down' would stop the town this REPL is on"),
        ("tt down", "error: 'down' would stop the town this REPL is on"),
    ]:
        await driver.command(line, expect)
        lines = await settle(driver)
        assert len(lines) == 1, lines
    await driver.command("list", "No agents")


async def test_text_that_is_not_unicode_is_refused_at_the_parser(
    driver: Driver, town: Town
) -> None:
    alice = await town.spawn_agent("alice")
    driver.out.set_mark()
    # Straight to the line reader's consumer: a terminal pipe cannot carry a lone surrogate.
    assert await driver.repl.execute("send alice 'bad \ud800 text'") is None
    assert driver.out.since_mark() == [
        "error: argument MSG: not valid text (character U+D800) (see 'help send')"
    ]
    assert (await town.messages.inbox(alice.id))[0] == []


async def test_ctrl_d_leaves(driver: Driver) -> None:
    await driver.command("list", "No agents")
    driver.pipe.send_text("\x04")
    with trio.fail_after(3):
        await driver.done.wait()


async def test_exit_leaves(driver: Driver) -> None:
    driver.pipe.send_text("exit\r")
    with trio.fail_after(3):
        await driver.done.wait()


async def test_ctrl_z_is_ignored(driver: Driver) -> None:
    await driver.command("li\x1ast", "No agents")  # no ^Z typed into the line
    assert not [line for line in await settle(driver) if "error" in line]
    assert not driver.done.is_set()


async def test_cli_presets_of_the_config_file_complete(driver: Driver, town: Town) -> None:
    completer = driver.repl.reader.session.completer
    assert completer is not None

    def complete(text: str) -> list[str]:
        found = completer.get_completions(Document(text, len(text)), CompleteEvent(True))
        return [c.text for c in found]

    assert "claude" in complete("spawn x --cli ")
    assert complete("spawn x --cli scr") == ["scripted"]  # [agent_clis.scripted]
    # Added to tinytown.toml after the REPL started (as 'tt config' in a shell does).
    town.config.set("agent_clis.reviewbot", "echo review")
    await driver.repl.keeper.refresh()
    assert complete("spawn x --cli rev") == ["reviewbot"]


async def test_ctrl_c_at_the_prompt_clears_the_line(driver: Driver, town: Town) -> None:
    await driver.type("spawn zed\x03")
    await driver.command("list", "No agents")
    assert await town.agents.list() == []
    assert not driver.done.is_set()


async def test_ctrl_c_cancels_the_running_command(driver: Driver) -> None:
    await driver.command("watch", "Watching events")
    assert driver.repl.busy
    os.kill(os.getpid(), signal.SIGINT)  # what the terminal sends for Ctrl-C meanwhile
    await driver.out.wait_for("(cancelled)")
    await driver.command("list", "No agents")


async def test_watch_shows_events_live_and_pauses_the_feed(driver: Driver, town: Town) -> None:
    await driver.command("watch", "Watching events")
    wendy = await town.spawn_agent("wendy")
    await driver.out.wait_for("[spawn] spawned wendy")
    assert driver.repl.cancel_command()
    await driver.out.wait_for("(cancelled)")
    assert not driver.repl.feed.paused
    # The feed reads the stream in order: once it shows a later event, it has had the spawn
    # in hand, and held it back while 'watch' printed it.
    await town.messages.send("supervisor", Informational("after watch"), sender=wendy.id)
    await driver.out.wait_for("[mail] from wendy: after watch")
    # 'watch' and the feed print events alike: the spawn is shown once, by 'watch'.
    assert len([line for line in driver.out.since_mark() if "[spawn]" in line]) == 1


async def test_broadcast_reaches_every_live_agent(driver: Driver, town: Town) -> None:
    handles = [await town.spawn_agent(f"w{i}") for i in range(50)]
    stopped = handles[::10]
    for handle in stopped:
        await handle.kill()  # stopped agents are skipped
    live = [h for h in handles if h not in stopped]
    note = (
        "Broadcast a note to 45 agents (no round of its own: it rides along with each"
        " agent's next round; --task makes it work)."
    )
    await driver.command("broadcast stand up  please", note)
    ids = set()
    for handle in live:
        queued, _ = await town.messages.inbox(handle.id)
        (message,) = queued
        assert message.type is MessageType.INFORMATIONAL  # a note: no round of its own
        assert message.text == "stand up please"
        assert message.sender == SUPERVISOR_ID
        ids.add(message.id)
    assert len(ids) == 1  # one message id, for correlation
    for handle in stopped:
        assert (await town.messages.inbox(handle.id))[0] == []
    work = "Broadcast a task to 45 agents (each runs a round for it)."
    await driver.command("broadcast --task all good", work)
    queued, _ = await town.messages.inbox(live[0].id)
    assert queued[-1].type is MessageType.TASK
    # the same words as the shell's 'send --all'
    assert broadcast_line(queued[-1], 45) == work and broadcast_line(queued[0], 45) == note
    for handle in live:
        await handle.kill()
    await driver.command("broadcast anyone", "Broadcast a note to no one (no live agents).")


async def test_completion_knows_agents_spawned_in_the_repl(driver: Driver) -> None:
    await driver.command("spawn alice", "Spawned alice")
    await driver.repl.keeper.refresh()
    completer = driver.repl.reader.session.completer
    assert completer is not None
    found = completer.get_completions(Document("kill al", 7), CompleteEvent(True))
    assert [c.text for c in found] == ["alice"]


async def test_send_from_the_repl_is_from_the_supervisor(
    driver: Driver, town: Town, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await town.spawn_agent("alice")
    bob = await town.spawn_agent("bob")
    monkeypatch.setenv("TT_AGENT_ID", bob.id)  # as if started from an agent's CLI
    await driver.command("send alice 'hello there'", "Sent task to alice")
    (message,) = (await town.messages.inbox(alice.id))[0]
    assert message.sender == SUPERVISOR_ID
    # 'inbox' without AGENT is the supervisor's, not bob's; the environment is left alone.
    await town.messages.send(bob.id, Informational("for bob"), sender=alice.id)
    await town.messages.send("supervisor", Informational("for people"), sender=alice.id)
    await driver.command("inbox", "for people")
    assert not [line for line in await settle(driver) if "for bob" in line]
    assert os.environ["TT_AGENT_ID"] == bob.id


async def test_help(driver: Driver) -> None:
    await driver.command("help", "REPL only:")
    listing = "\n".join(driver.out.lines)
    for name in ("spawn", "assign", "broadcast", "watch", "exit"):
        assert f"  {name} " in listing
    listed = {line.split()[0] for line in driver.out.lines if line.startswith("  ")}
    assert {"spawn", "broadcast", "demo"} <= listed
    assert not listed & {"run", "attach", "down", "init"}  # refused inside: not listed
    await driver.command("help task show", "usage: tt task show")
    await driver.command("help nothing", "error: No command 'nothing'")
    await driver.command("spawn --help", "usage: tt spawn")


async def test_mail_and_events_are_printed_as_they_happen(driver: Driver, town: Town) -> None:
    alice = await town.spawn_agent("alice")
    await driver.out.wait_for("[spawn] spawned alice")
    await town.messages.send("supervisor", Informational("tests pass"), sender=alice.id)
    await driver.out.wait_for("[mail] from alice: tests pass")
    await alice.interrupt()
    await driver.out.wait_for("[state] alice: starting -> paused")


async def test_mail_with_a_running_town_is_shown_once(
    runtime: Runtime, driver: Driver, town: Town
) -> None:
    assert (await driver.repl.keeper.refresh()).running
    alice = await town.spawn_agent("alice")
    await driver.out.wait_for("[spawn]")
    driver.out.set_mark()
    await town.messages.send("supervisor", Informational("done with it"), sender=alice.id)
    await driver.out.wait_for("[mail] from alice: done with it")
    # The feed reads the stream in order: once a later mail is shown, every event about the
    # first one (the "message" and the runtime's "mail") has had its chance to print.
    await town.messages.send("supervisor", Informational("marker"), sender=alice.id)
    await driver.out.wait_for("[mail] from alice: marker")
    assert len([ln for ln in driver.out.since_mark() if "done with it" in ln]) == 1
    # What was shown is the runtime receiving it (the runtime notes its mail just after
    # writing the "mail" event, so this may lag the line by a moment).
    with trio.fail_after(5):
        while "done with it" not in [m.text for m in runtime.mail]:
            await trio.sleep(0.01)


async def test_toolbar_counts_agents_by_state(driver: Driver, town: Town) -> None:
    await town.spawn_agent("a1")
    handle = await town.spawn_agent("a2")
    await handle.interrupt()
    await driver.repl.keeper.refresh()
    text = to_plain_text(driver.repl.reader.session.bottom_toolbar)  # what the prompt shows
    assert f"{town.name} · not running · starting 1 · paused 1 · 0 open tasks" in text


async def test_history_is_kept_in_the_town(town: Town, pipe: PipeInput) -> None:
    out = Transcript()
    repl = Repl(town, console=Console(DummyOutput(), on_line=out.add), input=pipe)
    pipe.send_text("list\r")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(repl.run)
        await out.wait_for("No agents")
        pipe.send_text("\x04")
    history = (town.root / ".tt" / "repl_history").read_text()
    assert "+list" in history
