"""The single writer: owns the only write connection and answers every queued item.

Handlers call ``submit``; the writer task takes everything waiting (up to ``max_batch``), writes it in
one ``BEGIN IMMEDIATE`` transaction, commits, and only then resolves each item's future. On SQLite the
whole transaction (look-up, multi-row inserts, commit) is one hop to the connection's thread
(``run_transaction``): every hop waits for a busy event loop to come round, so the batch makes one. The
usual batch, up to ``INSERT_ROWS`` new pushes and nothing else, is a single INSERT committed on its own
(``_insert_if_all_new``).

A failed batch is answered as failed and the writer goes on; if the failure broke the connection itself,
the writer opens a new one before the next batch. If the writer task ever ends without being closed,
everything still queued is failed at once rather than left to time out.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import aiosqlite

from storage import forwarding
from storage.connection import run_transaction
from storage.records import (
    AttemptRecord,
    Outcome,
    PushRecord,
    Record,
    RejectRecord,
    ReprocessedReject,
    WriteProbe,
    utc_now,
)

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


# Why the writer did not take an item: its queue is full, or it is not running.
UNAVAILABLE_CAUSES = ("queue_full", "writer_unavailable")


class WriterUnavailable(Exception):
    """The item was not taken: the queue is full or the writer is not running."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause  # one of UNAVAILABLE_CAUSES


class WriteFailed(Exception):
    """The batch holding the item was rolled back; nothing of it is stored."""


class CommitTimeout(Exception):
    """The item's batch did not commit in time; it may still commit, and a retry then counts as a duplicate."""


# What ``Writer.store`` raises when a record is not stored in time.
STORE_ERRORS = (WriterUnavailable, WriteFailed, CommitTimeout)


@dataclass(slots=True)
class _Item:
    record: Record
    future: asyncio.Future[Outcome] | None
    size: int


_STOP = object()

# Called after each commit with the batch's records, their outcomes and the seconds the write took.
CommitListener = Callable[[Sequence[Record], Sequence[Outcome], float], None]

Opener = Callable[[], Awaitable[aiosqlite.Connection]]


class Batches(Protocol):
    """The one step that differs per database: write a batch in one transaction, after a failure make
    sure the next batch has a working connection, and close."""

    async def write(self, records: Sequence[Record]) -> list[Outcome]: ...

    async def recover(self) -> None: ...

    async def close(self) -> None: ...


@dataclass
class WriterStats:
    batches: int = 0
    last_commit_seconds: float = 0.0
    last_error: str | None = None


class Writer:
    def __init__(
        self,
        batches: Batches,
        *,
        queue_max: int,
        max_batch: int,
        queue_max_bytes: float = math.inf,
    ) -> None:
        self._batches = batches
        self._queue_max = queue_max
        self._queue_max_bytes = queue_max_bytes
        self._queued_bytes = 0
        self._queued_records = 0
        self._max_batch = max_batch
        # Unbounded underneath: the limit is enforced in submit(), so the stop marker always fits. A plain deque
        # and one future to wake the writer cost a push less than asyncio.Queue's bookkeeping.
        self._queue: collections.deque[object] = collections.deque()
        self._arrival: asyncio.Future[None] | None = None  # set while the writer waits for an item
        self._accepting = True
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[CommitListener] = []
        self.stats = WriterStats()

    # -- what handlers and health checks see ---------------------------------------------------

    @property
    def depth(self) -> int:
        """Records waiting to be written."""
        return self._queued_records

    @property
    def running(self) -> bool:
        return self._accepting and self._task is not None and not self._task.done()

    @property
    def full(self) -> bool:
        return self._queued_records >= self._queue_max or self._queued_bytes >= self._queue_max_bytes

    def submit(self, record: Record, *, wait: bool, size: int = 0) -> asyncio.Future[Outcome] | None:
        """Queue a record of ``size`` bytes. With ``wait``, the future resolves once its batch is committed."""
        if not self.running:
            raise WriterUnavailable("writer_unavailable")
        if self.full or self._queued_bytes + size > self._queue_max_bytes:
            raise WriterUnavailable("queue_full")
        future = asyncio.get_running_loop().create_future() if wait else None
        self._put(_Item(record, future, size))
        self._queued_bytes += size
        self._queued_records += 1
        return future

    async def store(self, record: Record, *, wait: bool, size: int, commit_within: float) -> Outcome | None:
        """``submit``, then with ``wait`` the outcome once committed; None means queued, not yet stored.

        Raises WriterUnavailable, WriteFailed or CommitTimeout when the record is not stored in time.
        """
        # Queued mode answers at once while the writer keeps up. Once a whole batch waits behind the one
        # being written, a new push waits for its commit instead: a writer that falls behind then slows the
        # senders down to its own pace rather than filling the queue and refusing them with queue_full.
        wait = wait or self._queued_records >= self._max_batch
        future = self.submit(record, wait=wait, size=size)
        if future is None:
            return None
        # A timed-out wait fails only this future; the writer skips answering it but still writes the item,
        # which may commit: the sender's retry then arrives as a duplicate and is answered 200. A timer on
        # the future costs less per push than a timeout context around the wait.
        expiry = asyncio.get_running_loop().call_later(commit_within, _expire, future, commit_within)
        try:
            return await future
        finally:
            expiry.cancel()

    def add_listener(self, listener: CommitListener) -> None:
        """Run ``listener`` after every commit, once the waiting requests have their answers."""
        self._listeners.append(listener)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="airudder-receiver-writer")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not self._accepting:
            return  # close() stopped it
        reason = "it was cancelled" if task.cancelled() else repr(task.exception())
        log.error("the writer stopped unexpectedly (%s); pushes are refused until a restart", reason)
        self._fail_leftovers()

    async def close(self, drain_seconds: float) -> bool:
        """Stop taking items, write everything already queued, then close the connection.

        Returns whether everything queued was written; if not, the rest was failed. A writer waiting for
        another process's lock is cancelled between two short lock attempts, so closing takes at most
        ``drain_seconds`` plus one attempt (storage.connection.LOCK_ATTEMPT_MS).
        """
        self._accepting = False
        self._put(_STOP)
        drained = True
        # asyncio.wait, not wait_for: a writer task that already died must not make close() raise.
        if self._task is not None and not (await asyncio.wait({self._task}, timeout=drain_seconds))[0]:
            log.error("writer did not drain within %.1fs; %d items left unwritten", drain_seconds, self.depth)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            drained = False
        if self.depth:
            drained = False
        self._fail_leftovers()
        await self._batches.close()
        return drained

    def _fail_leftovers(self) -> None:
        leftovers = []
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Item):
                leftovers.append(item)
        self._taken(leftovers)
        self._fail(leftovers, WriterUnavailable("writer_unavailable"))

    # -- the writer task ------------------------------------------------------------------------

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            if not self._queue:
                self._arrival = asyncio.get_running_loop().create_future()
                await self._arrival
                continue
            first = self._queue.popleft()
            if first is _STOP:
                return
            batch: list[_Item] = [first]  # type: ignore[list-item]
            while len(batch) < self._max_batch and self._queue:
                item = self._queue.popleft()
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._taken(batch)
            await self._write_batch(batch)

    def _put(self, item: object) -> None:
        self._queue.append(item)
        arrival, self._arrival = self._arrival, None
        if arrival is not None and not arrival.done():
            arrival.set_result(None)

    def _taken(self, items: Sequence[_Item]) -> None:
        """Items leave the count of what is queued when the writer takes them (or fails them)."""
        self._queued_records -= len(items)
        self._queued_bytes -= sum(item.size for item in items)

    async def _write_batch(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        records = [item.record for item in batch]
        try:
            outcomes = await self._batches.write(records)
        except asyncio.CancelledError:
            # Cancelled mid-write (only when a drain overruns): none of these may be acknowledged. The batch
            # may still commit on the connection's thread; a sender's retry then counts as a duplicate.
            self._fail(batch, WriteFailed("the writer was stopped before the batch's commit was confirmed"))
            raise
        except Exception as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.error("batch of %d failed and was rolled back: %s", len(batch), self.stats.last_error)
            self._fail(batch, WriteFailed(self.stats.last_error))
            await self._batches.recover()
            return
        self.stats.batches += 1
        self.stats.last_commit_seconds = time.perf_counter() - started
        self.stats.last_error = None
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future is not None and not item.future.done():
                item.future.set_result(outcome)
        for listener in self._listeners:
            try:
                listener(records, outcomes, self.stats.last_commit_seconds)
            except Exception:  # a broken observer must not stop the writer
                log.exception("commit listener %r failed", listener)

    @staticmethod
    def _fail(batch: Sequence[_Item], exc: Exception) -> None:
        for item in batch:
            if item.future is not None and not item.future.done():
                item.future.set_exception(exc)
            elif item.future is None and isinstance(item.record, PushRecord):
                log.error("queued push %s was acknowledged but not stored", "/".join(item.record.key))


class SqliteBatches:
    """Batches written to SQLite on the single write connection, reopened when a failure broke it."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        lock_wait: float = 0.0,
        reopen: Opener | None = None,
        route: forwarding.Router | None = None,
    ) -> None:
        self._conn = conn
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
            return
        broken, self._conn = self._conn, conn
        try:
            await broken.close()
        except (ValueError, sqlite3.Error) as exc:
            log.warning("closing the broken connection failed: %s", exc)

    async def close(self) -> None:
        await self._conn.close()


def _write_records(records: Sequence[Record], route: forwarding.Router | None, db: sqlite3.Connection) -> list[Outcome]:
    """Inside the batch's transaction, on the connection's thread: the pushes' outcomes, in order."""
    pushes, rejects, probes, marks = split_batch(records)
    attempts = [r for r in records if isinstance(r, AttemptRecord)]
    stored = _stored_hashes(db, pushes)
    push_outcomes, new_rows, deliveries, versions = _classify(pushes, stored)
    for start in range(0, len(new_rows), INSERT_ROWS):
        _insert_pushes(db, new_rows[start : start + INSERT_ROWS])
    if deliveries:
        db.executemany(_COUNT_DELIVERY, deliveries)
    if versions:
        db.executemany(_INSERT_VERSION, versions)
    # The outbox: in this same transaction, so a stored push always has its forward jobs.
    jobs = forwarding.job_rows(route, pushes, push_outcomes) if route else []
    if jobs:
        db.executemany(forwarding.INSERT_JOBS, jobs)
    if attempts:
        inserts, updates = forwarding.attempt_rows(attempts)
        db.executemany(forwarding.INSERT_ATTEMPT, inserts)
        db.executemany(forwarding.UPDATE_JOB, updates)
    if rejects:
        db.executemany(
            _INSERT_REJECT,
            [(r.received_at, r.remote, r.reason, r.detail, r.path, r.headers, as_stored(r.body)) for r in rejects],
        )
    if marks:
        # After the pushes, so that each mark finds its push's seq, and in the same commit: a reject is
        # marked if and only if its push is stored.
        now = utc_now()
        db.executemany(_MARK_REPROCESSED, [(now, *m.push.key, m.reject_id) for m in marks])
    if probes:
        db.execute(_RECORD_PROBE, (probes[-1].received_at,))
    return push_outcomes


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
    outcomes, new_rows, _, _ = _classify(pushes, {})
    if len(new_rows) < len(pushes):
        return None
    _insert_pushes(db, new_rows)
    return outcomes


def _expire(future: asyncio.Future[Outcome], seconds: float) -> None:
    if not future.done():
        future.set_exception(CommitTimeout(f"the push was not stored within {seconds:g}s"))


def _push_of(record: PushRecord | ReprocessedReject) -> PushRecord:
    return record.push if isinstance(record, ReprocessedReject) else record


def split_batch(
    records: Sequence[Record],
) -> tuple[list[PushRecord], list[RejectRecord], list[WriteProbe], list[ReprocessedReject]]:
    """A batch by what each record asks for, in arrival order: every push (a reprocessed reject's too), the
    rejects, the probes, and the reprocessed rejects to mark."""
    pushes = [_push_of(r) for r in records if isinstance(r, PushRecord | ReprocessedReject)]
    rejects = [r for r in records if isinstance(r, RejectRecord)]
    probes = [r for r in records if isinstance(r, WriteProbe)]
    marks = [r for r in records if isinstance(r, ReprocessedReject)]
    return pushes, rejects, probes, marks


def outcomes_in_order(records: Sequence[Record], push_outcomes: Sequence[Outcome]) -> list[Outcome]:
    """One outcome per record: the pushes' in turn, STORED for the rest."""
    outcomes = iter(push_outcomes)
    return [next(outcomes) if isinstance(r, PushRecord | ReprocessedReject) else Outcome.STORED for r in records]


def _stored_hashes(db: sqlite3.Connection, pushes: Sequence[PushRecord]) -> dict[tuple[str, str, str], set[bytes]]:
    """For each of the batch's keys already stored: the hashes of its first body and its versions, in one query."""
    keys = list({p.key for p in pushes})
    if not keys:
        return {}
    params = [part for key in keys for part in key]
    rows = db.execute(stored_hashes_sql(len(keys)), params).fetchall()
    stored: dict[tuple[str, str, str], set[bytes]] = {}
    for workflow_id, node_id, call_id, first_hash, version_hash in rows:
        hashes = stored.setdefault((workflow_id, node_id, call_id), {first_hash})
        if version_hash is not None:
            hashes.add(version_hash)
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


def _classify(
    pushes: Sequence[PushRecord], stored: dict[tuple[str, str, str], set[bytes]]
) -> tuple[list[Outcome], list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Split a batch into new rows, extra deliveries and new versions, in arrival order.

    ``stored`` is updated as rows and versions are added, so a body repeated inside one batch counts as a
    duplicate, and a body equal to any stored one (first or version) adds no version.
    """
    outcomes: list[Outcome] = []
    new_rows: list[tuple[object, ...]] = []
    deliveries: list[tuple[object, ...]] = []
    versions: list[tuple[object, ...]] = []
    for p in pushes:
        hashes = stored.get(p.key)
        if hashes is None:
            stored[p.key] = {p.body_hash}
            outcomes.append(Outcome.NEW)
            new_rows.append(
                (
                    p.workflow_id,
                    p.node_id,
                    p.call_id,
                    p.workflow_name,
                    p.node_name,
                    p.case_id,
                    p.callee_number,
                    p.task_id,
                    p.robot_id,
                    p.call_start_time,
                    p.call_end_time,
                    p.intention,
                    p.hangup_type,
                    p.ring_type,
                    p.received_at,
                    p.received_at,
                    p.warnings,
                    p.body_hash,
                    p.body,
                )
            )
            continue
        deliveries.append((p.received_at, *p.key))
        if p.body_hash in hashes:
            outcomes.append(Outcome.DUPLICATE)
        else:
            hashes.add(p.body_hash)
            outcomes.append(Outcome.NEW_VERSION)
            versions.append((p.received_at, p.body_hash, p.body, *p.key))
    return outcomes, new_rows, deliveries, versions


async def _answers(conn: aiosqlite.Connection) -> bool:
    try:
        await conn.execute_fetchall("SELECT 1")
    except (ValueError, sqlite3.Error):  # aiosqlite raises ValueError once the connection is closed
        return False
    return True
