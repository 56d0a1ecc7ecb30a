"""Enumerations of the data model, serialised in lowercase as the Rust tool does."""

from __future__ import annotations

import enum


class TaskState(enum.StrEnum):
    PENDING = "pending"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def parse(cls, text: str) -> TaskState:
        """Read a state, accepting the Rust alias ``in_flight`` for ``running``."""
        text = text.strip().lower()
        if text in ("in_flight", "inflight", "in-flight"):
            return cls.RUNNING
        return cls(text)

    @property
    def terminal(self) -> bool:
        return self in (TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED)


class AgentState(enum.StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    WORKING = "working"
    PAUSED = "paused"
    DRAINING = "draining"
    COLD = "cold"
    ERROR = "error"
    STOPPED = "stopped"

    @property
    def terminal(self) -> bool:
        return self in (AgentState.STOPPED, AgentState.COLD, AgentState.ERROR)


class AgentType(enum.StrEnum):
    WORKER = "worker"
    SUPERVISOR = "supervisor"


class SpawnMode(enum.StrEnum):
    FRESH = "fresh"
    FORKED_CONTEXT = "forkedcontext"
    RESUMED = "resumed"

    @classmethod
    def parse(cls, text: str) -> SpawnMode:
        """Read a mode, accepting ``forked_context``/``forked-context`` spellings."""
        return cls(text.strip().lower().replace("_", "").replace("-", ""))


class Priority(enum.StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"

    @property
    def jumps_queue(self) -> bool:
        """High and urgent messages go to the head of the inbox."""
        return self in (Priority.HIGH, Priority.URGENT)


class MessageType(enum.StrEnum):
    TASK = "task"
    TASK_ASSIGN = "task_assign"
    TASK_DONE = "task_done"
    TASK_FAILED = "task_failed"
    QUERY = "query"
    INFORMATIONAL = "informational"
    CONFIRMATION = "confirmation"
    STATUS_REQUEST = "status_request"
    STATUS_RESPONSE = "status_response"
    PING = "ping"
    PONG = "pong"
    SHUTDOWN = "shutdown"
    CUSTOM = "custom"


BUILTIN_ROLES = ("worker", "reviewer", "researcher", "architect", "tester", "devops")
