"""The exceptions Tinytown raises, in one flat hierarchy.

Every error a user can cause derives from :class:`TinytownError`, whose message is
one clear sentence; front ends print it and exit 1, never a traceback.
"""

from __future__ import annotations


class TinytownError(Exception):
    """Base class: a user-facing failure with a one-sentence message."""


class NotInitializedError(TinytownError):
    """No ``tinytown.toml`` was found for the requested town."""


class ConfigError(TinytownError):
    """``tinytown.toml`` or a configuration value is invalid."""


class NotFoundError(TinytownError):
    """An agent, task or other record does not exist."""


class AmbiguousReferenceError(TinytownError):
    """An agent reference matches more than one agent."""


class InvalidNameError(TinytownError):
    """A town or agent name is not allowed."""


class AlreadyExistsError(TinytownError):
    """A record with that name or id already exists."""


class InvalidTransitionError(TinytownError):
    """A state change is not allowed from the record's current state."""


class InvalidInputError(TinytownError):
    """An argument or file is malformed (the message names what and where)."""


class RedisUnavailableError(TinytownError):
    """The Redis server cannot be reached or answered with an error."""


class RedisServerNotFoundError(TinytownError):
    """No usable ``redis-server`` binary could be found or it is too old."""


class CliNotFoundError(TinytownError):
    """An agent's CLI program is not installed or not executable."""


class RuntimeBusyError(TinytownError):
    """Another ``tt run`` already holds this town's runtime lease."""


class RuntimeNotRunningError(TinytownError):
    """The operation needs a running town and none holds the lease."""


class TimeoutExpiredError(TinytownError):
    """A bounded wait ran out before the condition was met."""


class MalformedRecordError(TinytownError):
    """JSON found in Redis could not be read as the expected record."""


class ReplyLostError(RedisUnavailableError):
    """A command was sent but its reply was lost (the connection dropped): the command
    may or may not have run. Raised instead of a blind retry for commands that are not
    idempotent; the caller re-reads the state it meant to change."""
