"""Task and agent state machines, and agent names (SPEC §2)."""

from __future__ import annotations

import itertools

import pytest

from tinytown.errors import InvalidNameError, InvalidTransitionError
from tinytown.model import (
    AGENT_TRANSITIONS,
    Agent,
    AgentState,
    Task,
    TaskState,
    new_id,
    validate_agent_name,
)
from tinytown.model.ids import parse_time
from tinytown.model.task import TASK_TRANSITIONS

S = TaskState
A = AgentState
NON_TERMINAL_TASK = {S.PENDING, S.ASSIGNED, S.RUNNING}
LIVE_AGENT = {A.STARTING, A.IDLE, A.WORKING, A.PAUSED, A.DRAINING}
TERMINAL_AGENT = {A.STOPPED, A.COLD, A.ERROR}

#: The task state machine as the spec describes it, written out independently of the code:
#: pending -> assigned -> running -> completed | failed | cancelled; cancel from any
#: non-terminal state; a dead agent's task goes back to pending; terminal states are final.
EXPECTED_TASK: dict[str, tuple[set[TaskState], TaskState]] = {
    "assign": ({S.PENDING, S.ASSIGNED}, S.ASSIGNED),
    "start": ({S.ASSIGNED, S.RUNNING}, S.RUNNING),
    "complete": (NON_TERMINAL_TASK, S.COMPLETED),
    "fail": (NON_TERMINAL_TASK, S.FAILED),
    "cancel": (NON_TERMINAL_TASK, S.CANCELLED),
    "requeue": ({S.ASSIGNED, S.RUNNING}, S.PENDING),
    "retry": ({S.RUNNING}, S.ASSIGNED),
}

EXPECTED_AGENT: dict[str, tuple[set[AgentState], AgentState]] = {
    "ready": ({A.STARTING, A.WORKING, A.IDLE}, A.IDLE),
    "work": ({A.STARTING, A.IDLE, A.WORKING}, A.WORKING),
    "interrupt": ({A.STARTING, A.IDLE, A.WORKING, A.PAUSED}, A.PAUSED),
    "resume_idle": ({A.PAUSED}, A.IDLE),
    "resume_working": ({A.PAUSED}, A.WORKING),
    "close": (LIVE_AGENT, A.DRAINING),
    "cool": (LIVE_AGENT, A.COLD),
    "kill": (LIVE_AGENT, A.STOPPED),
    "error": (LIVE_AGENT, A.ERROR),
    "restart": (TERMINAL_AGENT, A.STARTING),
    "orphan": (LIVE_AGENT, A.STOPPED),
}


def make_task(state: TaskState, **changes: object) -> Task:
    return Task(id=new_id(), description="d", state=state, **changes)  # type: ignore[arg-type]


def make_agent(state: AgentState, **changes: object) -> Agent:
    return Agent(
        id=new_id(),
        name="w1",
        nickname="Ruth",
        cli="claude",
        state=state,
        **changes,  # type: ignore[arg-type]
    )


# -- tasks ---------------------------------------------------------------------------------


def test_task_table_matches_the_spec() -> None:
    assert set(TASK_TRANSITIONS) == set(EXPECTED_TASK)
    for verb, (allowed, target) in EXPECTED_TASK.items():
        assert set(TASK_TRANSITIONS[verb][0]) == allowed, verb
        assert TASK_TRANSITIONS[verb][1] is target, verb


@pytest.mark.parametrize(
    ("verb", "state"),
    list(itertools.product(sorted(TASK_TRANSITIONS), list(TaskState))),
)
def test_every_task_verb_from_every_state(verb: str, state: TaskState) -> None:
    allowed, target = EXPECTED_TASK[verb]
    task = make_task(state, assigned_to=new_id())
    if state in allowed:
        after = task.transition(verb)
        assert after.state is target
        assert after.id == task.id
        assert after.description == task.description
        assert parse_time(after.updated_at) >= parse_time(task.updated_at)
        assert task.state is state  # records are immutable: the original is untouched
    else:
        with pytest.raises(InvalidTransitionError) as info:
            task.transition(verb)
        message = str(info.value)
        assert task.short_id in message
        assert state.value in message


@pytest.mark.parametrize("state", [s for s in TaskState if s.terminal])
def test_terminal_task_states_allow_nothing(state: TaskState) -> None:
    assert state in {S.COMPLETED, S.FAILED, S.CANCELLED}
    task = make_task(state)
    for verb, (allowed, _) in TASK_TRANSITIONS.items():
        assert state not in allowed
        with pytest.raises(InvalidTransitionError):
            task.transition(verb)


def test_non_terminal_states() -> None:
    assert {s for s in TaskState if not s.terminal} == NON_TERMINAL_TASK


@pytest.mark.parametrize("verb", ["complete", "fail", "cancel"])
def test_terminal_transition_sets_completed_at(verb: str) -> None:
    task = make_task(S.RUNNING)
    assert task.completed_at is None
    after = task.transition(verb, result="r")
    assert after.completed_at is not None
    assert after.completed_at.endswith("Z")
    assert after.result == "r"


@pytest.mark.parametrize("verb", ["assign", "start", "requeue", "retry"])
def test_non_terminal_transition_leaves_completed_at(verb: str) -> None:
    state = S.ASSIGNED if verb in ("start", "assign", "requeue") else S.RUNNING
    assert make_task(state).transition(verb).completed_at is None


def test_start_counts_attempts_and_sets_started_at() -> None:
    task = make_task(S.ASSIGNED, assigned_to=new_id())
    assert task.attempts == 0 and task.started_at is None
    running = task.transition("start")
    assert running.attempts == 1
    assert running.started_at is not None and running.started_at.endswith("Z")
    assert running.assigned_to == task.assigned_to
    # Starting an already running task (a repeated start) is not a new attempt.
    again = running.transition("start")
    assert again.attempts == 1
    assert again.started_at == running.started_at
    # A requeued task that starts again counts a second attempt.
    second = (
        running.transition("requeue").transition("assign", assigned_to=new_id()).transition("start")
    )
    assert second.attempts == 2


def test_requeue_clears_assigned_to() -> None:
    agent = new_id()
    for state in (S.ASSIGNED, S.RUNNING):
        task = make_task(state, assigned_to=agent, attempts=1)
        after = task.transition("requeue")
        assert after.state is S.PENDING
        assert after.assigned_to is None
        assert after.attempts == 1  # the failed attempt stays counted


def test_retry_keeps_the_agent() -> None:
    agent = new_id()
    after = make_task(S.RUNNING, assigned_to=agent).transition("retry")
    assert after.state is S.ASSIGNED
    assert after.assigned_to == agent


def test_assign_sets_agent_through_changes() -> None:
    agent = new_id()
    after = Task.new("x").transition("assign", assigned_to=agent)
    assert after.state is S.ASSIGNED
    assert after.assigned_to == agent


def test_unknown_task_verb_is_an_error() -> None:
    with pytest.raises(KeyError):
        make_task(S.PENDING).transition("teleport")


# -- agents --------------------------------------------------------------------------------


def test_agent_table_matches_the_spec() -> None:
    assert set(AGENT_TRANSITIONS) == set(EXPECTED_AGENT)
    for verb, (allowed, target) in EXPECTED_AGENT.items():
        assert set(AGENT_TRANSITIONS[verb][0]) == allowed, verb
        assert AGENT_TRANSITIONS[verb][1] is target, verb


def test_agent_terminal_states() -> None:
    assert {s for s in AgentState if s.terminal} == TERMINAL_AGENT
    # A terminal agent can only be restarted.
    for verb, (allowed, _) in AGENT_TRANSITIONS.items():
        if verb != "restart":
            assert not (set(allowed) & TERMINAL_AGENT), verb


@pytest.mark.parametrize(
    ("verb", "state"),
    list(itertools.product(sorted(AGENT_TRANSITIONS), list(AgentState))),
)
def test_every_agent_verb_from_every_state(verb: str, state: AgentState) -> None:
    allowed, target = EXPECTED_AGENT[verb]
    agent = make_agent(state, state_reason="why not")
    if state in allowed:
        after = agent.transition(verb)
        assert after.state is target
        assert after.id == agent.id and after.name == agent.name
        if target is not A.STARTING:
            assert after.state_reason is None
        assert agent.state is state
    else:
        with pytest.raises(InvalidTransitionError) as info:
            agent.transition(verb)
        message = str(info.value)
        assert agent.name in message
        assert state.value in message


def test_agent_transition_applies_changes() -> None:
    task_id = new_id()
    after = make_agent(A.IDLE).transition("work", current_task=task_id)
    assert after.state is A.WORKING
    assert after.current_task == task_id
    errored = after.transition("error", state_reason="CLI crashed")
    assert errored.state is A.ERROR
    assert errored.state_reason == "CLI crashed"


# -- agent names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "Z", "7", "worker-1", "backend.api", "my_agent", "A.b-c_d", "x" * 64, "0abc"],
)
def test_valid_agent_names(name: str) -> None:
    assert validate_agent_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-a",
        ".a",
        "_a",
        "a b",
        " a",
        "a ",
        "a:b",
        "a/b",
        "a*",
        "a?",
        "[a]",
        "é",
        "x" * 65,
        "a\n",
        "a\tb",
    ],
)
def test_invalid_agent_names(name: str) -> None:
    with pytest.raises(InvalidNameError, match="not allowed"):
        validate_agent_name(name)


@pytest.mark.parametrize("name", ["supervisor", "Conductor", "SUPERVISOR", "conductor"])
def test_reserved_agent_names(name: str) -> None:
    with pytest.raises(InvalidNameError, match="reserved"):
        validate_agent_name(name)


@pytest.mark.parametrize("name", ["supervisor2", "conductors", "my-supervisor"])
def test_names_containing_reserved_words_are_fine(name: str) -> None:
    assert validate_agent_name(name) == name
