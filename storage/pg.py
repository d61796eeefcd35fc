"""PostgreSQL through asyncpg: the URL, connections, the read adapter and the writer's batch step.

Several receivers may share one database. Two things make that safe:

- Dedupe is the database's: a new call is an ``INSERT ... ON CONFLICT`` on the unique key, so two
  receivers taking the same call at the same moment leave one row whose ``deliveries`` counts both.
- Every write transaction first takes one transaction-level advisory lock (``FEED_LOCK``), so batches
  from all receivers commit one after another: a batch's seqs are drawn, and become visible, only after
  every earlier batch has committed. A plain sequence would let a transaction holding seq 5 commit after
  one holding seq 6, and a reader that had already moved past 6 would never see 5. With the lock, what a
  reader can see always holds every seq below the largest it sees, as in SQLite (storage/queries.py).
  PostgreSQL makes a commit visible before it releases the transaction's locks, so the next batch's seqs
  are drawn after the previous batch is visible. The lock also makes each batch's outcome labels (new,
  duplicate, new version) exact, because the stored hashes are read after every earlier batch committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from storage.records import Outcome, PushRecord, Record, RejectRecord, push_summaries, utc_now
from storage.writer import _classify, outcomes_in_order, split_batch

log = logging.getLogger("airudder_receiver.storage")

_R = TypeVar("_R", PushRecord, RejectRecord)

URL_SCHEMES = ("postgresql", "postgres")
# Arbitrary constants naming this program's advisory locks, so other applications on the database keep theirs.
FEED_LOCK = 0x41495244_0001
MIGRATION_LOCK = 0x41495244_0002
CONNECT_SECONDS = 5.0
# Every receiver tells its committed pushes on this channel (NOTIFY is sent at commit, to every listener,
# its own included), so that each one's event stream shows every push, whichever receiver took it.
PUSHES_CHANNEL = "airudder_receiver_pushes"
# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more: a batch is told in parts below that.
NOTIFY_BYTES = 7000

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


def without_nul(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(v.replace(NUL, NUL_STORED) if isinstance(v, str) and NUL in v else v for v in values)


def _storable(record: _R) -> _R:
    """``record`` with U+0000 replaced in its text fields (the same object when it has none)."""
    changes: dict[str, Any] = {
        f.name: value.replace(NUL, NUL_STORED)
        for f in dataclasses.fields(record)
        if isinstance(value := getattr(record, f.name), str) and NUL in value
    }
    return dataclasses.replace(record, **changes) if changes else record


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


async def connect(url: str, command_timeout: float) -> asyncpg.Connection:
    """One connection; each statement on it gives up after ``command_timeout`` seconds."""
    try:
        return await asyncpg.connect(url, timeout=CONNECT_SECONDS, command_timeout=max(command_timeout, 0.1))
    except asyncpg.InterfaceError:
        raise
    except (ValueError, OverflowError) as exc:
        # asyncpg parses some of the URL with int() and hands the port to the socket as it is: a port that is
        # not a number, or past 65535, raises these rather than its own configuration error.
        raise asyncpg.ClientConfigurationError(f"the database URL is not valid ({exc})") from None


# -- reads --------------------------------------------------------------------------------------


# A quoted string (left as it is) or a placeholder.
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?")


def numbered(sql: str) -> str:
    """SQLite's ``?`` placeholders as PostgreSQL's ``$1, $2, ...``; a ``?`` inside a quoted string stays."""
    count = iter(range(1, 100_000))
    return _PLACEHOLDER.sub(lambda m: m[0] if m[0] != "?" else f"${next(count)}", sql)


class _Statement:
    """What ``PgConnection.execute`` returns: awaited, it runs; entered, it is a cursor over the rows."""

    def __init__(self, conn: asyncpg.Connection, sql: str, params: Sequence[Any], prefetch: int) -> None:
        self._conn = conn
        self._sql = sql
        self._params = without_nul(params)
        self._prefetch = prefetch

    def __await__(self) -> Generator[Any, None, None]:
        return self._run().__await__()

    async def _run(self) -> None:
        sql = self._sql.strip()
        # A read snapshot (storage.connection.read_snapshot): every statement sees the same commit, which in
        # PostgreSQL needs REPEATABLE READ (its default gives each statement its own snapshot).
        if sql == "BEGIN":
            sql = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        await self._conn.execute(numbered(sql), *self._params)

    async def __aenter__(self) -> _Statement:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def fetchone(self) -> asyncpg.Record | None:
        return await self._conn.fetchrow(numbered(self._sql), *self._params)

    async def __aiter__(self) -> AsyncIterator[asyncpg.Record]:
        sql = numbered(self._sql)
        if self._conn.is_in_transaction():
            async for row in self._conn.cursor(sql, *self._params, prefetch=self._prefetch):
                yield row
            return
        # A server-side cursor lives in a transaction; rows come ``prefetch`` at a time, memory stays flat.
        async with self._conn.transaction(isolation="repeatable_read", readonly=True):
            async for row in self._conn.cursor(sql, *self._params, prefetch=self._prefetch):
                yield row


class PgConnection:
    """A read connection that answers the calls storage/queries.py makes on an aiosqlite one."""

    def __init__(self, conn: asyncpg.Connection, chunk_rows: int = 64) -> None:
        self._conn = conn
        self._chunk_rows = chunk_rows

    def execute(self, sql: str, params: Iterable[Any] = ()) -> _Statement:
        return _Statement(self._conn, sql, tuple(params), self._chunk_rows)

    async def execute_fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[asyncpg.Record]:
        return list(await self._conn.fetch(numbered(sql), *without_nul(params)))

    async def close(self) -> None:
        await close_quietly(self._conn)


# -- the writer's batch step --------------------------------------------------------------------

_STORED_HASHES = """
SELECT p.workflow_id, p.node_id, p.call_id, p.body_hash, v.body_hash
FROM unnest($1::text[], $2::text[], $3::text[]) AS k (workflow_id, node_id, call_id)
JOIN pushes AS p USING (workflow_id, node_id, call_id)
LEFT JOIN push_versions AS v ON v.push_seq = p.seq
"""
# Under FEED_LOCK a key found absent stays absent until the commit; ON CONFLICT is what keeps one row
# per call whatever any process believed.
_INSERT_PUSH = """
INSERT INTO pushes (
    workflow_id, node_id, call_id, workflow_name, node_name, case_id, callee_number, task_id,
    robot_id, call_start_time, call_end_time, intention, hangup_type, ring_type,
    first_received_at, last_received_at, deliveries, warnings, body_hash, body
) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 1, $17, $18, $19)
ON CONFLICT (workflow_id, node_id, call_id) DO UPDATE
SET deliveries = pushes.deliveries + 1, last_received_at = greatest(pushes.last_received_at, excluded.last_received_at)
"""
_COUNT_DELIVERY = """
UPDATE pushes SET deliveries = deliveries + 1, last_received_at = greatest(last_received_at, $1)
WHERE workflow_id = $2 AND node_id = $3 AND call_id = $4
"""
_INSERT_VERSION = """
INSERT INTO push_versions (push_seq, received_at, body_hash, body)
SELECT seq, $1, $2, $3 FROM pushes WHERE workflow_id = $4 AND node_id = $5 AND call_id = $6
ON CONFLICT (push_seq, body_hash) DO NOTHING
"""
_INSERT_REJECT = """
INSERT INTO rejects (received_at, remote, reason, detail, path, headers, body) VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
_RECORD_PROBE = """
INSERT INTO meta (key, value) VALUES ('last_write_probe', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value
"""
_MARK_REPROCESSED = """
UPDATE rejects SET reprocessed_at = $1,
    reprocessed_seq = (SELECT seq FROM pushes WHERE workflow_id = $2 AND node_id = $3 AND call_id = $4)
WHERE id = $5
"""


class PgBatches:
    """Batches written to PostgreSQL on one connection of the writer's own, opened again whenever lost.

    While the server is down every batch fails at once (its pushes are answered 503); the first batch
    after it returns opens a new connection and commits.
    """

    def __init__(self, url: str, *, command_timeout: float) -> None:
        self._url = url
        self._conn: asyncpg.Connection | None = None
        self._command_timeout = command_timeout

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self._url, self._command_timeout)
        return self._conn

    async def write(self, records: Sequence[Record]) -> list[Outcome]:
        conn = await self._connection()
        pushes, rejects, probes, marks = split_batch(records)
        pushes = [_storable(p) for p in pushes]
        rejects = [_storable(r) for r in rejects]
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", FEED_LOCK)
            stored = await _stored_hashes(conn, pushes)
            push_outcomes, new_rows, deliveries, versions = _classify(pushes, stored)
            if new_rows:
                await conn.executemany(_INSERT_PUSH, new_rows)
            if deliveries:
                await conn.executemany(_COUNT_DELIVERY, deliveries)
            if versions:
                await conn.executemany(_INSERT_VERSION, versions)
            if rejects:
                await conn.executemany(
                    _INSERT_REJECT,
                    [(r.received_at, r.remote, r.reason, r.detail, r.path, r.headers, r.body) for r in rejects],
                )
            if marks:
                now = utc_now()
                await conn.executemany(_MARK_REPROCESSED, [(now, *without_nul(m.push.key), m.reject_id) for m in marks])
            if probes:
                await conn.execute(_RECORD_PROBE, probes[-1].received_at)
            outcomes = outcomes_in_order(records, push_outcomes)
            for part in notify_parts(push_summaries(records, outcomes)):
                await conn.execute("SELECT pg_notify($1, $2)", PUSHES_CHANNEL, part)
        return outcomes

    async def recover(self) -> None:
        """After a failed batch: keep the connection if it still answers, else drop it for the next batch."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return
        try:
            await conn.fetchval("SELECT 1", timeout=min(self._command_timeout, 1.0))
        except PG_ERRORS as exc:
            log.error("the database connection is broken (%s); the next batch opens a new one", described(exc))
            self._conn = None
            conn.terminate()

    async def close(self) -> None:
        if self._conn is not None:
            await close_quietly(self._conn)


async def _stored_hashes(
    conn: asyncpg.Connection, pushes: Sequence[PushRecord]
) -> dict[tuple[str, str, str], set[bytes]]:
    keys = list({p.key for p in pushes})
    if not keys:
        return {}
    columns = [list(column) for column in zip(*keys, strict=True)]
    stored: dict[tuple[str, str, str], set[bytes]] = {}
    for workflow_id, node_id, call_id, first_hash, version_hash in await conn.fetch(_STORED_HASHES, *columns):
        hashes = stored.setdefault((workflow_id, node_id, call_id), {first_hash})
        if version_hash is not None:
            hashes.add(version_hash)
    return stored


def notify_parts(summaries: list[dict[str, str]]) -> list[str]:
    """``summaries`` as JSON lists, each under NOTIFY_BYTES (a summary is a few hundred bytes at most)."""
    parts: list[bytes] = []
    part: list[bytes] = []
    size = 2
    for summary in summaries:
        item = orjson.dumps(summary)
        if part and size + len(item) + 1 > NOTIFY_BYTES:
            parts.append(b"[" + b",".join(part) + b"]")
            part, size = [], 2
        part.append(item)
        size += len(item) + 1
    if part:
        parts.append(b"[" + b",".join(part) + b"]")
    return [p.decode() for p in parts]


class PushListener:
    """Hands every receiver's NOTIFY of committed pushes to ``deliver``, on a connection of its own that it
    opens again (after a second) whenever it is lost; pushes committed while it is away are not told, and
    a stream's client catches up through /api/pushes as after any gap."""

    def __init__(self, url: str, deliver: Callable[[bytes], None]) -> None:
        self._url = url
        self._deliver = deliver
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen before returning, so that no push committed after the start goes untold."""
        listening = asyncio.Event()
        self._task = asyncio.create_task(self._run(listening), name="airudder-receiver-push-listener")
        # The database was just reached for the migrations; should it be gone again, the task keeps trying.
        waiter = asyncio.ensure_future(listening.wait())
        try:
            await asyncio.wait({waiter, self._task}, timeout=CONNECT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    def _received(self, conn: object, pid: int, channel: str, payload: object) -> None:
        self._deliver(str(payload).encode())

    async def _run(self, listening: asyncio.Event) -> None:
        while True:
            try:
                conn = await connect(self._url, CONNECT_SECONDS)
            except PG_ERRORS as exc:
                log.warning("cannot listen for pushes (%s); trying again in a second", described(exc))
                await asyncio.sleep(1.0)
                continue
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _, lost=lost: lost.set())
            try:
                await conn.add_listener(PUSHES_CHANNEL, self._received)
                listening.set()
                await lost.wait()
                log.warning("the connection listening for pushes was lost; opening a new one in a second")
            except PG_ERRORS as exc:
                log.warning("listening for pushes stopped (%s); trying again in a second", described(exc))
            finally:
                conn.terminate()
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class PgChunks:
    """storage.retention's chunks on PostgreSQL; each chunk holds FEED_LOCK, as SQLite's holds the write lock,
    so that a batch never finds its push gone between reading and writing it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self._conn.transaction():
            await self._conn.execute("SELECT pg_advisory_xact_lock($1)", FEED_LOCK)
            yield

    async def select(self, sql: str, cutoff: str, at: str, after_id: int) -> Sequence[Sequence[Any]]:
        return [tuple(row) for row in await self._conn.fetch(numbered(sql), cutoff, at, after_id)]

    async def change(self, statement: str, ids: list[int]) -> int:
        status = await self._conn.execute(numbered(statement.format(ids="SELECT unnest(?::bigint[])")), ids)
        return int(status.rsplit(" ", 1)[1])  # "DELETE 12", "UPDATE 12"
