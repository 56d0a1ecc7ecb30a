"""Access to ``tt mcp --http``: the bearer token (made once, kept only as a hash in
``.tt/``) and which addresses may be bound without one.

``tt mcp token new`` prints a fresh token once and stores its SHA-256 digest in
``.tt/mcp/token.json`` (mode 0600, inside the 0700 ``.tt/``); the clear token is never
written anywhere, least of all in ``tinytown.toml`` (a file people commit). A plain
SHA-256 is enough here: the token is 256 random bits, so there is nothing to guess that a
slow password hash would protect. Verifying compares digests in constant time
(``hmac.compare_digest``), so response timing says nothing about how much of a guess was
right. A new token replaces the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import secrets
from pathlib import Path

from tinytown.errors import ConfigError, InvalidInputError
from tinytown.model import now

#: Where the digest lives, relative to the town root.
TOKEN_FILE = Path(".tt") / "mcp" / "token.json"
#: Where ``tt mcp --http`` listens unless told.
DEFAULT_BIND = "127.0.0.1:8765"
#: Random bytes in a token (printed as URL-safe base64, 43 characters).
TOKEN_BYTES = 32


def token_path(root: Path) -> Path:
    return root / TOKEN_FILE


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(root: Path) -> str:
    """Make a token, store its digest (replacing any previous one), return it in clear.

    The caller shows it once; it cannot be read back later."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    path = token_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"sha256": _digest(token), "created_at": now()}, f)
        f.write("\n")
    os.replace(tmp, path)  # atomic: a reader sees the old digest or the new one
    return token


def stored_digest(root: Path) -> str | None:
    """The stored digest, or None when no token was made. Raises ConfigError for a file
    that is not ours (one sentence naming it)."""
    path = token_path(root)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"Cannot read the MCP token file {path}: {exc}.") from None
    digest = data.get("sha256") if isinstance(data, dict) else None
    if not isinstance(digest, str) or len(digest) != 64:
        raise ConfigError(
            f"The MCP token file {path} is damaged; make a new token (tt mcp token new)."
        )
    return digest


def verify(token: str, digest: str) -> bool:
    """Whether ``token`` is the one whose digest is ``digest`` (constant-time compare)."""
    return hmac.compare_digest(_digest(token), digest)


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port). Raises InvalidInputError."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidInputError(f"--bind needs HOST:PORT (e.g. {DEFAULT_BIND}), not {text!r}.")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def check_exposure(host: str, digest: str | None) -> None:
    """Refuse (ConfigError) a non-loopback address without a token."""
    if digest is None and not is_loopback(host):
        raise ConfigError(
            f"Refusing to serve MCP on {host} without a token: anyone who can reach it could"
            " run the town. Run 'tt mcp token new' first, or bind to 127.0.0.1."
        )
