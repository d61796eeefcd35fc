"""PostgreSQL through asyncpg: the URL, the errors that are the operator's to fix, and connections that
let go of everything they hold when their receiver freezes, is cut off or dies.

Several receivers share one database, so what one holds must not outlive it. Every connection a receiver
opens sets, for its own session: ``idle_in_transaction_session_timeout`` (a receiver stopped between two
statements of a transaction loses the transaction and its locks after a few seconds), and TCP keepalives
and ``tcp_user_timeout`` (a receiver cut off from the network is noticed by the server within seconds).
The receiver's own batches hold the shared write lock only inside one statement (storage/postgres/
batches.py), so they cannot be frozen while holding it at all.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

log = logging.getLogger("airudder_receiver.storage")

URL_SCHEMES = ("postgresql", "postgres")
# Arbitrary constants naming this program's advisory locks, so other applications on the database keep theirs.
FEED_LOCK = 0x41495244_0001
MIGRATION_LOCK = 0x41495244_0002
CONNECT_SECONDS = 5.0
# Every receiver tells its committed pushes on this channel (NOTIFY is sent at commit, to every listener,
# its own included), so that each one's event stream shows every push, whichever receiver took it.
PUSHES_CHANNEL = "airudder_receiver_pushes"
# A transaction left open this long by a receiver that stopped answering is ended by the server.
IDLE_IN_TRANSACTION_MS = 2000
# A read connection holds no lock, but a long export between two chunks of its cursor may pause longer.
READER_IDLE_IN_TRANSACTION_MS = 600_000
# What a receiver's session asks of the server so that a receiver gone from the network is dropped: the
# first keepalive after 5 s of silence, then every 2 s, gone after 3 unanswered; unacknowledged data gives
# up after 10 s.
SESSION_SETTINGS = {
    "application_name": "airudder-receiver",
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "10000",
}

# What asyncpg raises when the server is down, slow or refuses: the operator's to fix, never a bug.
PG_ERRORS = (
    OSError,
    TimeoutError,
    ssl.SSLError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


# PostgreSQL's text cannot hold U+0000, which JSON can carry as \u0000 inside a string: in the typed
# columns (and in a filter looking for them) it becomes U+FFFD. The body keeps the escape as received.
NUL, NUL_STORED = "\x00", "\ufffd"


def without_nul(values: Iterable[Any]) -> list[Any]:
    return [v.replace(NUL, NUL_STORED) if isinstance(v, str) and NUL in v else v for v in values]


def is_postgres(db: str) -> bool:
    return db.split("://", 1)[0].lower() in URL_SCHEMES and "://" in db


def masked(db: str) -> str:
    """``db`` fit for a log line or a message: a URL's password (before the host, or a ``password=`` query
    parameter, which libpq and asyncpg take too) replaced by ***; a path as it is."""
    if not is_postgres(db):
        return db
    parts = urlsplit(db)
    query = _QUERY_PASSWORD.sub(r"\1***", parts.query)
    if parts.password is None:
        return urlunsplit(parts._replace(query=query))
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}", query=query))


# A password given as a query parameter: its value, up to the next parameter.
_QUERY_PASSWORD = re.compile(r"((?:^|&)password=)[^&]*", re.IGNORECASE)


def described(exc: BaseException) -> str:
    """An asyncpg or socket error in a few words (TimeoutError has no message of its own)."""
    return str(exc) or type(exc).__name__


async def close_quietly(conn: asyncpg.Connection) -> None:
    """Close within a second; a server that does not answer (gone, or unreachable) gets the socket cut."""
    try:
        await conn.close(timeout=1.0)
    except PG_ERRORS as exc:  # asyncpg has cut the connection already
        log.warning("closing a database connection failed: %s", described(exc))


async def connect(
    url: str, command_timeout: float, idle_in_transaction_ms: int = IDLE_IN_TRANSACTION_MS
) -> asyncpg.Connection:
    """One connection with the session settings above; each statement on it gives up after
    ``command_timeout`` seconds. A read connection, which holds no lock, may be given longer idle."""
    settings = {**SESSION_SETTINGS, "idle_in_transaction_session_timeout": str(idle_in_transaction_ms)}
    try:
        return await asyncpg.connect(
            url, timeout=CONNECT_SECONDS, command_timeout=max(command_timeout, 0.1), server_settings=settings
        )
    except asyncpg.InterfaceError:
        raise
    except (ValueError, OverflowError) as exc:
        # asyncpg parses some of the URL with int() and hands the port to the socket as it is: a port that is
        # not a number, or past 65535, raises these rather than its own configuration error.
        raise asyncpg.ClientConfigurationError(f"the database URL is not valid ({exc})") from None
