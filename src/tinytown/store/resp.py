"""What every Redis connection shares, without an event loop: where the server is
(:class:`Address`), the command arguments (:data:`Arg`), error replies
(:class:`ResponseError`), and RESP packing and parsing by hiredis.

Kept free of trio so a one-shot command that never needs an event loop (see
store/oneshot.py) does not pay for importing one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import hiredis

from tinytown.errors import RedisUnavailableError, ReplyLostError

Arg = str | bytes | int | float


class ResponseError(Exception):
    """Redis answered a command with an error reply."""


@attrs.frozen
class Address:
    """Where a Redis server is and how to log in."""

    path: str | None = None
    host: str = "localhost"
    port: int = 6379
    tls: bool = False
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    db: int = 0

    @classmethod
    def from_url(cls, url: str) -> Address:
        if url.startswith("unix://") and "?" not in url and "@" not in url:
            # The embedded server's URL: skip importing redis-py (~0.2 s of `tt` start-up).
            return cls(path=url[len("unix://") :])
        # Everything else (auth, TLS, db, query options) through redis-py's parser.
        from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

        try:
            opts = parse_url(url)
        except ValueError as exc:
            raise RedisUnavailableError(f"Invalid Redis URL: {exc}.") from exc
        conn_cls = opts.get("connection_class")
        return cls(
            path=opts.get("path") if conn_cls is UnixDomainSocketConnection else None,
            host=opts.get("host") or "localhost",
            port=int(opts.get("port") or 6379),
            tls=conn_cls is SSLConnection,
            username=opts.get("username"),
            password=opts.get("password"),
            db=int(opts.get("db") or 0),
        )

    def describe(self) -> str:
        """The address without credentials, for messages."""
        if self.path:
            return f"unix://{self.path}"
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"

    def login(self) -> list[list[Arg]]:
        """The commands that log a new connection in (AUTH, SELECT), in order."""
        out: list[list[Arg]] = []
        if self.password:
            out.append(["AUTH", *([self.username] if self.username else []), self.password])
        if self.db:
            out.append(["SELECT", self.db])
        return out


#: Commands that may run twice with the same effect and the same reply: read-only ones
#: (MULTI/EXEC only group the commands they wrap). Only these are retried after a lost
#: reply; everything else raises ReplyLostError then.
IDEMPOTENT = frozenset(
    {
        "PING", "ECHO", "TIME", "DBSIZE", "INFO",
        "GET", "MGET", "STRLEN", "EXISTS", "TYPE", "TTL", "PTTL", "SCAN",
        "HGET", "HMGET", "HGETALL", "HKEYS", "HVALS", "HLEN", "HEXISTS", "HSCAN",
        "LRANGE", "LLEN", "LINDEX", "LPOS",
        "SCARD", "SMEMBERS", "SISMEMBER", "SSCAN",
        "ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZCARD", "ZSCORE", "ZRANK", "ZCOUNT",
        "XRANGE", "XREVRANGE", "XLEN", "XREAD",
        "MULTI", "EXEC", "DISCARD",
    }
)  # fmt: skip
#: Read-only subcommands of admin commands.
IDEMPOTENT_SUB = frozenset(
    {
        ("CONFIG", "GET"), ("SCRIPT", "EXISTS"),
        ("CLIENT", "ID"), ("CLIENT", "LIST"), ("CLIENT", "INFO"), ("CLIENT", "GETNAME"),
    }
)  # fmt: skip


def is_idempotent(command: Sequence[Arg]) -> bool:
    """Whether ``command`` may safely run again after its reply was lost."""
    if command[0] in IDEMPOTENT:  # the usual spelling: no decoding (status checks 10,000)
        return True
    name = _upper(command[0])
    if name in IDEMPOTENT:
        return True
    return len(command) > 1 and (name, _upper(command[1])) in IDEMPOTENT_SUB


def _upper(arg: Arg) -> str:
    return (arg.decode() if isinstance(arg, bytes) else str(arg)).upper()


def reader() -> hiredis.Reader:
    """A RESP parser whose error replies are :class:`ResponseError` values."""
    return hiredis.Reader(replyError=ResponseError, encoding="utf-8", errors="replace")


def pack(command: Sequence[Arg]) -> bytes:
    return hiredis.pack_command(tuple(command))  # type: ignore[arg-type]


def reply_lost(exc: RedisUnavailableError) -> ReplyLostError:
    return ReplyLostError(
        f"Lost the connection to Redis before a reply ({str(exc).rstrip('.')}):"
        " the command may or may not have run."
    )


def login_failed(address: Address, exc: Exception) -> RedisUnavailableError:
    """The error of a connection whose AUTH/SELECT failed (nothing of the caller's was sent)."""
    if isinstance(exc, ResponseError):
        return RedisUnavailableError(f"Redis at {address.describe()} refused the login: {exc}.")
    return RedisUnavailableError(
        f"Lost the connection to Redis at {address.describe()} while logging in."
    )


def unreachable(address: Address, exc: OSError | Exception) -> RedisUnavailableError:
    why = getattr(exc, "strerror", None) or exc
    return RedisUnavailableError(f"Cannot reach Redis at {address.describe()}: {why}.")


def first_reply(replies: list[Any]) -> Any:
    """The reply of a single command; an error reply is raised."""
    (reply,) = replies
    if isinstance(reply, ResponseError):
        raise reply
    return reply
