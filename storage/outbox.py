"""The forwarding outbox, as both databases keep it: which pushes get jobs, the jobs' rows, and every read of
them that /api, the dispatcher and the command line make, in shared SQL.

A job is one push body (the first one, or a differing version) for one destination. Its state is
``pending`` (tried at ``next_attempt_at``, unix seconds), ``delivered`` or ``dead`` (``max_attempts``
failed; kept until replayed). Every attempt is a row of ``forward_attempts``. Writing the jobs with their
push, claiming due jobs and putting jobs back in line are each backend's own (storage/sqlite/outbox.py,
storage/postgres/outbox.py): the Outbox protocol below.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from plumbing.destinations import Destination
from storage import sql
from storage.records import AttemptRecord, Outcome, PauseRecord, PushRecord, RetryRecord, utc_text
from storage.sql import Params, Reader

STATES = ("pending", "delivered", "dead")

Router = Callable[[PushRecord], Sequence[str]]


def router(destinations: Sequence[Destination]) -> Router | None:
    """Which destinations a push goes to; None when nothing is forwarded, so the writer skips the work."""
    if not destinations:
        return None

    def route(push: PushRecord) -> list[str]:
        values = {"workflow_id": push.workflow_id, "node_id": push.node_id, "intention": push.intention}
        return [d.name for d in destinations if d.matches(values)]

    return route


def idempotency_key(destination: str, push: PushRecord) -> str:
    """The same for every attempt and every replay of one body to one destination, and for nothing else."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (destination, *push.key):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(push.body_hash)
    return "msg_" + digest.hexdigest()


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job to add with its push: the push is found by its key, the version (if any) by its body hash."""

    destination: str
    idempotency_key: str
    created_at: str
    next_attempt_at: float
    version_hash: bytes | None  # None for a call's first body
    key: tuple[str, str, str]

    def values(self) -> tuple[object, ...]:
        return (
            self.destination,
            self.idempotency_key,
            self.created_at,
            self.next_attempt_at,
            self.version_hash,
            *self.key,
        )


def job_rows(route: Router, pushes: Sequence[PushRecord], outcomes: Sequence[Outcome]) -> list[JobRow]:
    """The jobs of a batch: new calls and new versions get jobs, duplicates none."""
    rows: list[JobRow] = []
    now = time.time()
    for push, outcome in zip(pushes, outcomes, strict=True):
        if outcome is Outcome.DUPLICATE:
            continue
        version_hash = push.body_hash if outcome is Outcome.NEW_VERSION else None
        for name in route(push):
            rows.append(JobRow(name, idempotency_key(name, push), push.received_at, now, version_hash, push.key))
    return rows


def attempt_values(a: AttemptRecord) -> tuple[object, ...]:
    """An attempt's row: job id, time, status, seconds, error (and the job id again, to check it still exists)."""
    return (a.job_id, a.attempted_at, a.status, a.seconds, a.error, a.job_id)


def job_update_values(a: AttemptRecord) -> tuple[object, ...]:
    """What an attempt changes on its job: attempts added (0 for a failure that was the destination's), state,
    next attempt, last attempt, delivered time, error."""
    return (int(a.counted), a.state, a.next_attempt_at, a.attempted_at, a.state, a.attempted_at, a.error, a.job_id)


def steering(params: Callable[[], Params], record: PauseRecord | RetryRecord) -> list[tuple[str, Params]]:
    """The statements that set or end a destination's pause, or send one job again now from a fresh attempt
    count (ending its destination's pause with it), each with its values."""
    p = params()
    if isinstance(record, RetryRecord):
        ended = "DELETE FROM forward_pauses WHERE destination IN (SELECT destination FROM forward_jobs WHERE id = {})"
        q = params()
        return [
            (ended.format(p(record.job_id)), p),
            (
                f"UPDATE forward_jobs SET state = 'pending', attempts = 0, next_attempt_at = {q(time.time())},"
                f" last_error = NULL WHERE id = {q(record.job_id)}",
                q,
            ),
        ]
    if record.reason is None:
        return [(f"DELETE FROM forward_pauses WHERE destination = {p(record.destination)}", p)]
    upsert = (
        "INSERT INTO forward_pauses (destination, paused_at, paused_until, reason)"
        f" VALUES ({p(record.destination)}, {p(record.paused_at)}, {p(record.until)}, {p(record.reason)})"
        " ON CONFLICT (destination) DO UPDATE SET paused_at = excluded.paused_at,"
        " paused_until = excluded.paused_until, reason = excluded.reason"
    )
    return [(upsert, p)]


# -- claiming due jobs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    attempts: int
    idempotency_key: str
    version: int
    next_attempt_at: float
    key: tuple[str, str, str]
    body: str | None  # None once purge dropped it


def job_fields(due_at: str = "j.next_attempt_at") -> str:
    """The columns a claimed job is read with, from forward_jobs j, pushes p and push_versions v; ``due_at`` is
    when it fell due."""
    return (
        f"j.id, j.attempts, j.idempotency_key, j.version, {due_at}, p.workflow_id, p.node_id, p.call_id,"
        " CASE WHEN j.version_id IS NULL THEN p.body ELSE v.body END"
    )


JOB_SOURCE = (
    "forward_jobs AS j JOIN pushes AS p ON p.seq = j.push_seq LEFT JOIN push_versions AS v ON v.id = j.version_id"
)
# order = "per_call": a job waits while an earlier version of its call to the same destination is pending
# (waiting, claimed or retrying); a delivered or dead one lets it go.
NO_EARLIER_VERSION_PENDING = (
    "NOT EXISTS (SELECT 1 FROM forward_jobs AS e WHERE e.push_seq = j.push_seq AND e.destination = j.destination"
    " AND e.state = 'pending' AND e.version < j.version)"
)
# Jobs tried before (a retry, the delivery a paused destination is probed with, a replayed one) go first
# among the due ones: the forward_jobs_tried index finds them without walking the never-tried ones.
TRIED = "j.last_attempt_at IS NOT NULL"


def job_of(row: Any) -> Job:
    return Job(row[0], row[1], row[2], row[3], row[4], (row[5], row[6], row[7]), row[8])


@dataclass(frozen=True, slots=True)
class Claimed:
    """Due jobs now this receiver's to send; when none was due, when the destination's next job falls due (None:
    none waits, or jobs were claimed)."""

    jobs: list[Job]
    next_due: float | None


@dataclass(frozen=True, slots=True)
class Backlog:
    pending: int
    oldest_pending_at: str | None
    dead: int


class Outbox(Protocol):
    """The dispatcher's side of the outbox: claim due jobs, count the backlog, read the pauses."""

    async def claim(self, destination: str, limit: int, skip: Collection[int], lease: float, per_call: bool) -> Claimed:
        """Up to ``limit`` due jobs of ``destination``, those tried before first (oldest due first), then the
        rest soonest first, leaving out the ids in ``skip`` (those in flight here) and, with ``per_call``, a
        later version while an earlier one is pending. No other receiver is handed them for ``lease``
        seconds, or until their attempt is recorded: a receiver that dies holding them lets them go when the
        lease ends."""
        ...

    async def backlog(self) -> dict[str, Backlog]: ...

    async def pauses(self) -> dict[str, tuple[float | None, str]]: ...

    async def close(self) -> None: ...


async def backlog(conn: Reader) -> dict[str, Backlog]:
    """Pending and dead counts by destination (delivered rows, the bulk, are not visited)."""
    rows = await conn.fetch(
        "SELECT destination, state, count(*), min(created_at) FROM forward_jobs"
        " WHERE state IN ('pending', 'dead') GROUP BY destination, state"
    )
    found: dict[str, dict[str, tuple[int, str | None]]] = {}
    for destination, state, count, oldest in rows:
        found.setdefault(destination, {})[state] = (count, oldest)
    return {
        name: Backlog(s.get("pending", (0, None))[0], s.get("pending", (0, None))[1], s.get("dead", (0, None))[0])
        for name, s in found.items()
    }


async def pauses(conn: Reader) -> dict[str, tuple[float | None, str]]:
    """Each paused destination's (until, reason): until None while held for ``forward resume``."""
    rows = await conn.fetch("SELECT destination, paused_until, reason FROM forward_pauses")
    return {row[0]: (row[1], row[2]) for row in rows}


# -- what /api and the command line read ---------------------------------------------------------------

JOB_COLUMNS = (
    "id",
    "destination",
    "workflow_id",
    "node_id",
    "call_id",
    "version",
    "state",
    "attempts",
    "created_at",
    "next_attempt_at",
    "last_attempt_at",
    "delivered_at",
    "last_error",
    "idempotency_key",
)
_SELECT_JOBS = (
    "SELECT j.id, j.destination, p.workflow_id, p.node_id, p.call_id, j.version, j.state, j.attempts, j.created_at,"
    " j.next_attempt_at, j.last_attempt_at, j.delivered_at, j.last_error, j.idempotency_key"
    " FROM forward_jobs AS j JOIN pushes AS p ON p.seq = j.push_seq"
)
ATTEMPT_COLUMNS = ("attempted_at", "status", "seconds", "error")


def _job(row: Any) -> dict[str, Any]:
    item = dict(zip(JOB_COLUMNS, row, strict=True))
    # Only a pending job has a next attempt; it is shown in the same form as every other time.
    pending = item["state"] == "pending"
    item["next_attempt_at"] = utc_text(datetime.fromtimestamp(item["next_attempt_at"], UTC)) if pending else None
    return item


@dataclass(frozen=True)
class JobFilter:
    destination: str | None = None
    state: str | None = None
    call_id: str | None = None
    after: int = 0


async def page_jobs(conn: Reader, job_filter: JobFilter, limit: int) -> list[dict[str, Any]]:
    p = conn.params()
    found = sql.where(
        p,
        (
            ("j.id > {}", job_filter.after),
            ("j.destination = {}", job_filter.destination),
            ("j.state = {}", job_filter.state),
            ("p.call_id = {}", job_filter.call_id),
        ),
    )
    rows = await conn.fetch(f"{_SELECT_JOBS} WHERE {found} ORDER BY j.id LIMIT {p(limit)}", p)
    return [_job(row) for row in rows]


async def jobs_of_push(conn: Reader, seq: int) -> list[dict[str, Any]]:
    """A push's jobs, each with its attempts oldest first (call inside the caller's read snapshot)."""
    p = conn.params()
    jobs = [_job(row) for row in await conn.fetch(f"{_SELECT_JOBS} WHERE j.push_seq = {p(seq)} ORDER BY j.id", p)]
    if jobs:
        p = conn.params()
        attempts = await conn.fetch(
            "SELECT a.job_id, a.attempted_at, a.status, a.seconds, a.error FROM forward_attempts AS a"
            f" JOIN forward_jobs AS j ON j.id = a.job_id WHERE j.push_seq = {p(seq)} ORDER BY a.id",
            p,
        )
        by_job: dict[int, list[dict[str, Any]]] = {job["id"]: [] for job in jobs}
        for row in attempts:
            by_job[row[0]].append(dict(zip(ATTEMPT_COLUMNS, row[1:], strict=True)))
        for job in jobs:
            job["history"] = by_job[job["id"]]
    return jobs


async def job(conn: Reader, job_id: int) -> dict[str, Any] | None:
    p = conn.params()
    rows = await conn.fetch(f"{_SELECT_JOBS} WHERE j.id = {p(job_id)}", p)
    return _job(rows[0]) if rows else None


async def summary(conn: Reader, configured: Collection[str] = ()) -> list[dict[str, Any]]:
    """Counts by destination and state, the oldest pending job, the last error and the pause (None, or its
    ``paused_at``, ``until`` (None while held for forward resume) and ``reason``), for ``forward status`` and
    /api/destinations; every ``configured`` name is listed, with deliveries or not."""
    async with conn.snapshot():
        rows = await conn.fetch(
            "SELECT destination, state, count(*), min(created_at) FROM forward_jobs GROUP BY destination, state"
        )
        errors = await conn.fetch(
            "SELECT destination, last_error FROM (SELECT destination, last_error, row_number() OVER"
            " (PARTITION BY destination ORDER BY last_attempt_at DESC) AS n FROM forward_jobs"
            " WHERE state != 'delivered' AND last_error IS NOT NULL) AS latest WHERE n = 1"
        )
        paused = await conn.fetch("SELECT destination, paused_at, paused_until, reason FROM forward_pauses")
    table: dict[str, dict[str, Any]] = {}

    def item(destination: str) -> dict[str, Any]:
        return table.setdefault(destination, {"destination": destination, **dict.fromkeys(STATES, 0), "paused": None})

    for name in configured:
        item(name)
    for destination, state, count, oldest in rows:
        item(destination)[state] = count
        if state == "pending":
            item(destination)["oldest_pending_at"] = oldest
    for destination, error in errors:
        item(destination)["last_error"] = error
    for destination, paused_at, until, reason in paused:
        shown = utc_text(datetime.fromtimestamp(until, UTC)) if until is not None else None
        item(destination)["paused"] = {"paused_at": paused_at, "until": shown, "reason": reason}
    return [table[name] for name in sorted(table)]


# -- replay: which jobs go back in line ----------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which jobs a replay puts back: one call's, those created in a time window, or the dead ones."""

    call_id: str | None = None
    since: str | None = None
    until: str | None = None
    dead: bool = False
    destination: str | None = None


def selected(params: Params, selection: Selection) -> str:
    """The WHERE clause of a selection over forward_jobs j joined with pushes p."""
    return sql.where(
        params,
        (
            ("p.call_id = {}", selection.call_id),
            ("j.created_at >= {}", selection.since),
            ("j.created_at < {}", selection.until),
            ("j.destination = {}", selection.destination),
            ("j.state = {}", "dead" if selection.dead else None),
        ),
    )


async def count_selected(conn: Reader, selection: Selection) -> int:
    p = conn.params()
    found = selected(p, selection)
    ((count,),) = await conn.fetch(
        f"SELECT count(*) FROM forward_jobs AS j JOIN pushes AS p ON p.seq = j.push_seq WHERE {found}", p
    )
    return int(count)


class Replays(Protocol):
    """A backend's writes for the command line: put jobs back in line, a chunk at a time; end a pause."""

    async def replay_chunk(self, selection: Selection, after: int, limit: int) -> tuple[int, int]:
        """Put up to ``limit`` selected jobs with an id above ``after`` back to pending, due now, with a fresh
        attempt count (their history stays), and end their destinations' pauses, in one short write
        transaction; (how many, the last id)."""
        ...

    async def resume(self, destination: str) -> bool:
        """End the destination's pause; whether it was paused."""
        ...


# Putting deliveries back in line asks for them to be sent: their destinations' pauses end with it.
def end_pauses_of(p: Params, ids: Sequence[int]) -> str:
    return (
        "DELETE FROM forward_pauses WHERE destination IN"
        f" (SELECT DISTINCT destination FROM forward_jobs WHERE id IN ({p.many(ids)}))"
    )
