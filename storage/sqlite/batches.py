"""The SQLite batch step: a batch in one ``BEGIN IMMEDIATE`` transaction on the single write connection.

The whole transaction (look-up, multi-row inserts, outbox jobs, commit) is one hop to the connection's
thread (``run_transaction``): every hop waits for a busy event loop to come round, so the batch makes one.
The usual batch, up to ``INSERT_ROWS`` new pushes and nothing else, is a single INSERT committed on its own
(``_insert_if_all_new``).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import aiosqlite

from storage import outbox
from storage.batch import (
    LATEST_COLUMNS,
    StoredHashes,
    add_stored,
    classify,
    latest_values,
    outcomes_in_order,
    push_row,
    split_batch,
)
from storage.link import LinkHealth
from storage.records import Outcome, PushRecord, Record, utc_now
from storage.sqlite.connection import run_transaction
from storage.sqlite.outbox import INSERT_ATTEMPT, INSERT_JOBS, UPDATE_JOB
from storage.sqlite.reader import sqlite_params

log = logging.getLogger("airudder_receiver.writer")

_INSERT_PUSHES = """
INSERT INTO pushes (
    workflow_id, node_id, call_id, workflow_name, node_name, case_id, callee_number, task_id,
    robot_id, call_start_time, call_end_time, intention, hangup_type, ring_type,
    first_received_at, last_received_at, deliveries, warnings, body_hash, body
) VALUES """
_PUSH_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"
# New rows go in with multi-row INSERTs of up to this many rows. sqlite3 lets go of the GIL for every
# statement step, and the connection's thread must win it back from the event loop each time, which on a
# busy server is the slow part: one step for many rows instead of one per row. Not more: sqlite3 caches
# each statement text (an INSERT of 37 rows is not one of 38) with the values last bound to it, bodies
# included, until it runs again; up to 256 rows, a flood of queued pushes left some 100 MB held in cached
# INSERTs of every size, and up to 64 rows holds at most a few MB. At 64 connections or fewer, a batch of
# new pushes still fits in one.
INSERT_ROWS = 64
_COUNT_DELIVERY = """
UPDATE pushes SET deliveries = deliveries + 1, last_received_at = max(last_received_at, ?)
WHERE workflow_id = ? AND node_id = ? AND call_id = ?
"""
_INSERT_VERSION = """
INSERT OR IGNORE INTO push_versions (push_seq, received_at, body_hash, body)
SELECT seq, ?, ?, ? FROM pushes WHERE workflow_id = ? AND node_id = ? AND call_id = ?
"""
# The typed columns follow the latest version, as the inspector and a call's detail show it.
_TAKE_LATEST = (
    f"UPDATE pushes SET {', '.join(f'{column} = ?' for column in LATEST_COLUMNS)}"
    " WHERE workflow_id = ? AND node_id = ? AND call_id = ?"
)
_INSERT_REJECT = """
INSERT INTO rejects (received_at, remote, reason, detail, path, headers, body)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
_RECORD_PROBE = "INSERT OR REPLACE INTO meta (key, value) VALUES ('last_write_probe', ?)"
_MARK_REPROCESSED = """
UPDATE rejects SET reprocessed_at = ?,
    reprocessed_seq = (SELECT seq FROM pushes WHERE workflow_id = ? AND node_id = ? AND call_id = ?)
WHERE id = ?
"""


def as_stored(body: bytes | None) -> str | bytes | None:
    """A refused body as text when it is UTF-8 without NUL, so that sqlite3 and Datasette show it and JSON
    functions read it; other bytes are kept exactly, as a BLOB."""
    if body is None:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    return body if "\x00" in text else text


Opener = Callable[[], Awaitable[aiosqlite.Connection]]


class SqliteBatches:
    """Batches written to SQLite on the single write connection, reopened when a failure broke it."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        lock_wait: float = 0.0,
        reopen: Opener | None = None,
        route: outbox.Router | None = None,
        health: LinkHealth | None = None,
    ) -> None:
        self._conn = conn
        self._health = health or LinkHealth()
        self._lock_wait = lock_wait
        self._reopen = reopen
        # Which forwarding destinations take a push; None when nothing is forwarded.
        self._route = route

    async def write(self, records: Sequence[Record]) -> list[Outcome]:
        # The whole batch, its look-up and its commit are one hop to the connection's thread.
        push_outcomes = await run_transaction(
            self._conn,
            self._lock_wait,
            partial(_write_records, records, self._route),
            # A forwarded push needs its jobs in the same transaction, which one statement cannot give.
            alone=None if self._route else partial(_insert_if_all_new, records),
        )
        return outcomes_in_order(records, push_outcomes)

    async def recover(self) -> None:
        """After a failed batch: keep the connection if it still answers, else open a new one."""
        if self._reopen is None or await _answers(self._conn):
            return
        log.error("the database connection is broken; opening a new one")
        try:
            conn = await self._reopen()
        except (OSError, sqlite3.Error) as exc:
            log.error("could not reopen the database (the next failed batch tries again): %s", exc)
            self._health.reachable = False
            self._health.failed_connects += 1
            return
        self._health.reachable = True
        broken, self._conn = self._conn, conn
        try:
            await broken.close()
        except (ValueError, sqlite3.Error) as exc:
            log.warning("closing the broken connection failed: %s", exc)

    async def close(self) -> None:
        await self._conn.close()


def _write_records(records: Sequence[Record], route: outbox.Router | None, db: sqlite3.Connection) -> list[Outcome]:
    """Inside the batch's transaction, on the connection's thread: the pushes' outcomes, in order."""
    batch = split_batch(records)
    found = classify(batch.pushes, _stored_hashes(db, batch.pushes))
    new_rows = [push_row(p) for p in found.new]
    for start in range(0, len(new_rows), INSERT_ROWS):
        _insert_pushes(db, new_rows[start : start + INSERT_ROWS])
    if found.repeated:
        db.executemany(_COUNT_DELIVERY, [(p.received_at, *p.key) for p in found.repeated])
    if found.versions:
        db.executemany(_INSERT_VERSION, [(p.received_at, p.body_hash, p.body, *p.key) for p in found.versions])
        db.executemany(_TAKE_LATEST, [(*latest_values(p), *p.key) for p in found.versions])
    # The outbox: in this same transaction, so a stored push always has its forward jobs.
    jobs = outbox.job_rows(route, batch.pushes, found.outcomes) if route else []
    if jobs:
        db.executemany(INSERT_JOBS, [job.values() for job in jobs])
    if batch.attempts:
        db.executemany(INSERT_ATTEMPT, [outbox.attempt_values(a) for a in batch.attempts])
        db.executemany(UPDATE_JOB, [outbox.job_update_values(a) for a in batch.attempts])
    for record in batch.steering:
        for statement, params in outbox.steering(sqlite_params, record):
            db.execute(statement, params.values)
    if batch.rejects:
        db.executemany(
            _INSERT_REJECT,
            [
                (r.received_at, r.remote, r.reason, r.detail, r.path, r.headers, as_stored(r.body))
                for r in batch.rejects
            ],
        )
    if batch.marks:
        # After the pushes, so that each mark finds its push's seq, and in the same commit: a reject is
        # marked if and only if its push is stored.
        now = utc_now()
        db.executemany(_MARK_REPROCESSED, [(now, *m.push.key, m.reject_id) for m in batch.marks])
    if batch.probes:
        db.execute(_RECORD_PROBE, (batch.probes[-1].received_at,))
    return found.outcomes


def _insert_pushes(db: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
    db.execute(_INSERT_PUSHES + ",".join([_PUSH_VALUES] * len(rows)), [v for row in rows for v in row])


def _insert_if_all_new(records: Sequence[Record], db: sqlite3.Connection) -> list[Outcome] | None:
    """The usual batch, new pushes only, as ONE INSERT in autocommit mode (see ``run_transaction``).

    None when the batch holds anything else, more rows than one INSERT takes, or a key twice. A key that is
    already stored fails the INSERT as a whole (IntegrityError), and the batch goes the long way round.
    """
    pushes = [r for r in records if isinstance(r, PushRecord)]
    if len(pushes) < len(records) or len(pushes) > INSERT_ROWS:
        return None
    found = classify(pushes, {})
    if len(found.new) < len(pushes):
        return None
    _insert_pushes(db, [push_row(p) for p in found.new])
    return found.outcomes


def _stored_hashes(db: sqlite3.Connection, pushes: Sequence[PushRecord]) -> StoredHashes:
    """For each of the batch's keys already stored: the hashes of its first body and its versions, in one query."""
    keys = list({p.key for p in pushes})
    if not keys:
        return {}
    params = [part for key in keys for part in key]
    stored: StoredHashes = {}
    for workflow_id, node_id, call_id, first_hash, version_hash in db.execute(
        stored_hashes_sql(len(keys)), params
    ).fetchall():
        add_stored(stored, (workflow_id, node_id, call_id), first_hash, version_hash)
    return stored


def stored_hashes_sql(key_count: int) -> str:
    """One index search per key: CROSS JOIN makes SQLite loop over the keys and search pushes for each.

    (A row-value ``IN (VALUES ...)`` scanned the whole table, which grew slower with every stored push.)
    """
    placeholders = ",".join(["(?,?,?)"] * key_count)
    return (
        f"SELECT p.workflow_id, p.node_id, p.call_id, p.body_hash, v.body_hash FROM (VALUES {placeholders}) AS k "
        "CROSS JOIN pushes AS p ON p.workflow_id = k.column1 AND p.node_id = k.column2 AND p.call_id = k.column3 "
        "LEFT JOIN push_versions AS v ON v.push_seq = p.seq"
    )


async def _answers(conn: aiosqlite.Connection) -> bool:
    try:
        await conn.execute_fetchall("SELECT 1")
    except (ValueError, sqlite3.Error):  # aiosqlite raises ValueError once the connection is closed
        return False
    return True
