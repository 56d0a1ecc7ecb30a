"""A question to the supervisor stands out in the REPL's feed: its own line and a bell."""

from __future__ import annotations

from prompt_toolkit.output import DummyOutput

from tinytown.model import Query
from tinytown.repl.console import Console
from tinytown.repl.feed import Feed
from tinytown.repl.snapshot import SnapshotKeeper
from tinytown.services.town import Town


async def test_a_question_rings_the_bell_and_says_how_to_answer(town: Town) -> None:
    lines: list[str] = []
    feed = Feed(town, Console(DummyOutput(), on_line=lines.append), SnapshotKeeper(town))
    await town.spawn_agent("asker")
    note = await town.messages.send("supervisor", Query("which db?"), sender="asker")
    await town.messages.send("supervisor", Query("ok?"), sender="asker")
    events = [e for e in await town.messages.recent_events(10) if e.kind == "message"]
    for event in events:
        await feed.show(event)
    assert len(lines) == 2
    assert lines[0].endswith(
        f' [question] from asker: which db?  (answer: reply {note.id[:8]} "...")\a'
    )
    assert lines[0].count("\a") == 1
