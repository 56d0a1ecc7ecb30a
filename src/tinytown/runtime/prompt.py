"""Composing one round's prompt from the messages the agent holds."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tinytown.model import Agent, Message, Task
from tinytown.model.enums import SpawnMode
from tinytown.model.ids import SUPERVISOR_ID
from tinytown.services.eventformat import cut

CONTEXT_BEGIN = "<<<BEGIN PARENT CONTEXT>>>"
CONTEXT_END = "<<<END PARENT CONTEXT>>>"
_TITLE = re.compile(r"# Tinytown: round (\d+) ")


def round_number(prompt: str) -> int | None:
    """The round a prompt made by :func:`compose` is for (its first line), else None."""
    match = _TITLE.match(prompt)
    return int(match.group(1)) if match else None


def sender_name(sender: str, names: Mapping[str, str]) -> str:
    """How a prompt or a reply names a sender: the agent's name, or ``supervisor``."""
    if sender == SUPERVISOR_ID:
        return "supervisor"
    return names.get(sender, sender[:8])


def one_line(text: str, limit: int = 4000) -> str:
    """One line of at most ``limit`` characters, cut at a word and marked with ``…``."""
    return cut(text, limit)


def compose(
    agent: Agent,
    town: str,
    round_no: int,
    tasks: Sequence[Task],
    requests: Sequence[Message],
    notes: Sequence[Message],
    names: Mapping[str, str],
    parent_results: Sequence[Task] = (),
    tools_note: str | None = None,
) -> str:
    """The prompt text. Tasks and requests carry ``Description:``/``Message:`` lines that
    scripted agents (and people) can read; notes are context only. ``tools_note`` tells
    the agent about the town's MCP tools when its CLI has them this round."""
    role = agent.role_id or "worker"
    out = [
        f"# Tinytown: round {round_no} for agent {agent.name} ({agent.nickname}), town {town}",
        f"You are agent {agent.name!r} with role {role!r}.",
        *([tools_note] if tools_note else []),
        "",
    ]
    if tasks:
        out.append("## Tasks")
        for task in tasks:
            out += [
                f"### Task {task.id}",
                f"Task ID: {task.id}",
                f"Description: {one_line(task.description)}",
            ]
            if task.tags:
                out.append(f"Tags: {', '.join(task.tags)}")
            out.append(
                f'When finished you may run: tt task complete {task.id} --result "summary"'
                f' (or tt task fail {task.id} --reason "why").'
            )
            out.append("")
    if requests:
        out.append("## Messages")
        for msg in requests:
            sender = sender_name(msg.sender, names)
            urgent = " URGENT" if msg.priority.jumps_queue else ""
            out += [
                f"### Message {msg.type.value}{urgent} from {sender}",
                f"Message: {one_line(msg.text)}",
                "",
            ]
    if notes:
        out.append("## Notes (for context; no action needed)")
        for msg in notes:
            out.append(f"- from {sender_name(msg.sender, names)}: {one_line(msg.text, 400)}")
        out.append("")
    if agent.spawn_mode is SpawnMode.FORKED_CONTEXT and parent_results:
        out += ["## Context inherited from your parent agent", CONTEXT_BEGIN]
        for task in parent_results:
            out.append(f"- {one_line(task.description, 200)} => {one_line(task.result or '', 600)}")
        out += [CONTEXT_END, ""]
    out += [
        "## Working with the town",
        '- tt send AGENT "text" (add --query to ask, --info to inform); tt send supervisor ...',
        "- tt task current shows your task; tt tasks / tt status show the town.",
        "- Exit 0 when done: your output becomes the task result unless you completed it yourself.",
    ]
    return "\n".join(out) + "\n"
