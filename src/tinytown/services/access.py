"""Least privilege for agents: the Redis URL an agent's CLI gets never holds the admin
password. See docs/security.md.

- Embedded server (``unix://`` socket in ``.tt/``, mode 0700, no password): agents get
  the same URL; the socket's permissions are the access control.
- External server whose URL has no credentials: the same URL (nothing to leak).
- External server with a password: the town creates an ACL user limited to its own
  keys and channels with a fresh random password, and agents get that user's URL. If
  the server cannot (Redis < 6.2, or the admin user may not manage ACLs), agents get
  the URL without credentials, so their ``tt`` calls are refused by Redis, and
  :meth:`AgentAccess.prepare` returns a warning for the runtime to show.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from tinytown.errors import RedisUnavailableError
from tinytown.store import admin
from tinytown.store.client import ResponseError
from tinytown.store.records import Store

#: Query parameters of a Redis URL that carry credentials.
_SECRET_PARAMS = frozenset({"password", "username"})


def has_password(url: str) -> bool:
    """Whether ``url`` carries a password (in its netloc or its query string)."""
    parts = urlsplit(url)
    return parts.password is not None or any(
        k == "password" for k, _ in parse_qsl(parts.query, keep_blank_values=True)
    )


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """``url`` with its credentials replaced (None, None: removed)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    auth = ""
    if password is not None:
        auth = f"{quote(username or '', safe='')}:{quote(password, safe='')}@"
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in _SECRET_PARAMS
        ]
    )
    return urlunsplit((parts.scheme, auth + host, parts.path, query, parts.fragment))


def agent_username(town: str) -> str:
    return f"tt-{town}-agent"


class AgentAccess:
    """The Redis URL agents of one town get (:attr:`agent_url`)."""

    def __init__(self, store: Store, url: str) -> None:
        self.store = store
        self.url = url
        self.username = agent_username(store.keys.town)
        #: Safe until :meth:`prepare` runs: never the admin password.
        self.agent_url = with_credentials(url, None, None) if has_password(url) else url

    @property
    def restricted(self) -> bool:
        """Whether agents log in as the town's restricted ACL user."""
        return urlsplit(self.agent_url).username == self.username

    async def prepare(self) -> str | None:
        """Make :attr:`agent_url` usable: with a password-protected server, (re)create
        the town's agent ACL user with a new random password (the previous one stops
        working). Returns None, or one sentence saying agents get no credentials and why.
        Cancellable."""
        if not has_password(self.url):
            self.agent_url = self.url
            return None
        password = secrets.token_urlsafe(32)
        try:
            await admin.set_agent_user(self.store, self.username, password)
        except (ResponseError, RedisUnavailableError) as exc:
            self.agent_url = with_credentials(self.url, None, None)
            return (
                "agents get no Redis password (their 'tt' calls will be refused): the server"
                f" could not create the restricted ACL user {self.username!r}: {exc}"
            )
        self.agent_url = with_credentials(self.url, self.username, password)
        return None
