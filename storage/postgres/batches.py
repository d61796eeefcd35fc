"""The PostgreSQL batch step: one look-up, then the whole batch as one statement, ``receiver_write_batch``.

Several receivers may share one database. Two things make that safe:

- Dedupe is the database's: the function checks, under the shared write lock, that what this receiver
  classified from its look-up still holds; when another receiver stored the same call in between, nothing
  is written and the batch is looked up and classified again.
- The function takes one transaction-level advisory lock (``FEED_LOCK``) first, so batches from all
  receivers commit one after another: a batch's seqs are drawn, and become visible, only after every
  earlier batch has committed. A plain sequence would let a transaction holding seq 5 commit after one
  holding seq 6, and a reader that had already moved past 6 would never see 5. With the lock, what a
  reader can see always holds every seq below the largest it sees, as in SQLite (storage/queries.py).

The lock is held inside one statement, never across a round trip to the receiver: a receiver frozen
(SIGSTOP), cut off or killed mid-batch holds nothing that stops the others.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from storage import outbox
from storage.batch import (
    LATEST_COLUMNS,
    PUSH_ROW_COLUMNS,
    Classified,
    Split,
    StoredHashes,
    add_stored,
    classify,
    latest_values,
    outcomes_in_order,
    push_row,
    split_batch,
)
from storage.link import Link, LinkHealth
from storage.postgres.connection import NUL, NUL_STORED, PG_ERRORS, close_quietly, connect, described, without_nul
from storage.postgres.reader import pg_params
from storage.postgres.schema import BATCH_CHANGED
from storage.records import Outcome, PushRecord, Record, push_summaries, utc_now

log = logging.getLogger("airudder_receiver.storage")

# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more: a batch is told in parts below that.
NOTIFY_BYTES = 7000
# How often a batch is written: once taking every call for new, then after a look-up, again whenever another
# receiver changed one of its calls in between.
CLASSIFY_TRIES = 6

_STORED_HASHES = """
SELECT p.workflow_id, p.node_id, p.call_id, p.body_hash, v.body_hash
FROM unnest($1::text[], $2::text[], $3::text[]) AS k (workflow_id, node_id, call_id)
JOIN pushes AS p USING (workflow_id, node_id, call_id)
LEFT JOIN push_versions AS v ON v.push_seq = p.seq
"""
_KEY = ("workflow_id", "node_id", "call_id")


class BatchContended(Exception):
    """Other receivers changed the batch's calls every time it was classified."""


def _json(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Small rows as a JSON list of objects (bytes as hex, U+0000 as stored: storage/postgres/connection.py)."""
    return orjson.dumps(
        [
            dict(zip(columns, without_nul(v.hex() if isinstance(v, bytes) else v for v in row), strict=True))
            for row in rows
        ]
    ).decode()


def _storable(push: PushRecord) -> PushRecord:
    """``push`` with U+0000 replaced in its text fields, as they are stored and looked up (the same object
    when it has none)."""
    changes: dict[str, Any] = {
        f.name: value.replace(NUL, NUL_STORED)
        for f in dataclasses.fields(push)
        if isinstance(value := getattr(push, f.name), str) and NUL in value
    }
    return dataclasses.replace(push, **changes) if changes else push


# receiver_write_batch's arguments, in order (storage/postgres/schema.py).
_WRITE_BATCH = f"SELECT receiver_write_batch({', '.join(f'${n}' for n in range(1, 16))})"


def batch_arguments(batch: Split, found: Classified, route: outbox.Router | None, notify: list[str]) -> list[object]:
    """The arguments of ``receiver_write_batch``: each part of the batch; bodies and hashes as arrays."""
    jobs = outbox.job_rows(route, batch.pushes, found.outcomes) if route else []
    new_keys = {p.key for p in found.new}
    return [
        _json(PUSH_ROW_COLUMNS[:-2], [push_row(p)[:-2] for p in found.new]),
        [p.body for p in found.new],
        [p.body_hash for p in found.new],
        # The calls the look-up found stored: the function checks they still are.
        _json(_KEY, list(dict.fromkeys(p.key for p in found.repeated if p.key not in new_keys))),
        _json((*_KEY, "received_at"), [(*p.key, p.received_at) for p in found.repeated]),
        _json(
            (*_KEY, "received_at", *LATEST_COLUMNS),
            [(*p.key, p.received_at, *latest_values(p)) for p in found.versions],
        ),
        [p.body for p in found.versions],
        [p.body_hash for p in found.versions],
        _json(
            ("destination", "idempotency_key", "created_at", "next_attempt_at", "version_hash", *_KEY),
            [job.values() for job in jobs],
        ),
        _json(
            ("job_id", "attempted_at", "status", "seconds", "error", "state", "next_attempt_at", "counted"),
            [
                (a.job_id, a.attempted_at, a.status, a.seconds, a.error, a.state, a.next_attempt_at, int(a.counted))
                for a in batch.attempts
            ],
        ),
        _json(
            ("received_at", "remote", "reason", "detail", "path", "headers"),
            [(r.received_at, r.remote, r.reason, r.detail, r.path, r.headers) for r in batch.rejects],
        ),
        [r.body for r in batch.rejects],
        _json((*_KEY, "reject_id", "marked_at"), [(*m.push.key, m.reject_id, utc_now()) for m in batch.marks]),
        batch.probes[-1].received_at if batch.probes else None,
        notify,
    ]


class PgBatches:
    """Batches written to PostgreSQL on one connection of the writer's own, opened again whenever lost.

    While the server is down every batch fails at once (its pushes are answered 503); connecting again
    waits its turn (storage/link.py), and the first batch after the server returns commits.
    """

    def __init__(self, url: str, *, command_timeout: float, route: outbox.Router | None, health: LinkHealth) -> None:
        self._command_timeout = command_timeout
        self._route = route
        self._link: Link[asyncpg.Connection] = Link(lambda: connect(url, command_timeout), PG_ERRORS, health)

    async def write(self, records: Sequence[Record]) -> list[Outcome]:
        conn = await self._link.get()
        batch = split_batch(records)
        batch.pushes = [_storable(p) for p in batch.pushes]
        keys = [p.key for p in batch.pushes]
        for tries in range(CLASSIFY_TRIES):
            # The usual batch holds new calls only: the first try takes every call for new without looking
            # (one round trip instead of two), and the function's check sends any other batch the long way.
            found = classify(batch.pushes, await _stored_hashes(conn, keys) if tries else {})
            outcomes = outcomes_in_order(records, found.outcomes)
            notify = notify_parts(push_summaries(records, outcomes))
            try:
                await conn.execute(_WRITE_BATCH, *batch_arguments(batch, found, self._route, notify))
            except asyncpg.PostgresError as exc:
                if exc.sqlstate != BATCH_CHANGED:
                    raise
                continue
            # Each its own statement, outside the batch's: none needs the write lock or the pushes.
            for record in batch.steering:
                for statement, params in outbox.steering(pg_params, record):
                    await conn.execute(statement, *params.values)
            return outcomes
        raise BatchContended(f"other receivers changed this batch's calls {CLASSIFY_TRIES} times while it was written")

    async def recover(self) -> None:
        """After a failed batch: keep the connection if it still answers, else drop it for the next batch."""
        conn = self._link.current
        if conn is None:
            return
        try:
            if not conn.is_closed():
                await conn.fetchval("SELECT 1", timeout=min(self._command_timeout, 1.0))
                return
        except PG_ERRORS as exc:
            log.error("the database connection is broken (%s); the next batch opens a new one", described(exc))
        self._link.lost()
        conn.terminate()

    async def close(self) -> None:
        conn = self._link.lost()
        if conn is not None:
            await close_quietly(conn)


async def _stored_hashes(conn: asyncpg.Connection, keys: Sequence[tuple[str, str, str]]) -> StoredHashes:
    unique = list(dict.fromkeys(keys))
    if not unique:
        return {}
    columns = [list(column) for column in zip(*unique, strict=True)]
    stored: StoredHashes = {}
    for workflow_id, node_id, call_id, first_hash, version_hash in await conn.fetch(_STORED_HASHES, *columns):
        add_stored(stored, (workflow_id, node_id, call_id), first_hash, version_hash)
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
