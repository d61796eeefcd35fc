"""What the handlers hand to the writer: plain values, no SQL."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum


def utc_text(moment: datetime) -> str:
    """A moment as stored: sortable ISO 8601 UTC text with milliseconds, e.g. 2026-11-24T19:47:09.123Z.

    ``moment`` must be timezone-aware.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Second:
    """The current second as text, worked out once per second rather than per push."""

    number = -1
    text = ""


def utc_now() -> str:
    """Receive times, in the stored form of ``utc_text``."""
    now = time.time()
    second = int(now)
    if second != _Second.number:
        _Second.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _Second.number = second
    return f"{_Second.text}.{int((now - second) * 1000):03d}Z"


# Not frozen, unlike the other records: one is built per push, and a frozen dataclass sets each of its twenty
# fields through object.__setattr__, which made building it more than twice as slow. Nothing changes a record;
# it cannot be hashed (nor a ReprocessedReject holding one), and nothing needs it to be.
@dataclass(slots=True)
class PushRecord:
    workflow_id: str
    node_id: str
    call_id: str
    workflow_name: str | None
    node_name: str | None
    case_id: str | None
    callee_number: str | None
    task_id: str | None
    robot_id: str | None
    call_start_time: str | None
    call_end_time: str | None
    intention: str | None
    hangup_type: str | None
    ring_type: str | None
    received_at: str
    warnings: str | None
    body_hash: bytes
    body: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.workflow_id, self.node_id, self.call_id)


@dataclass(frozen=True, slots=True)
class RejectRecord:
    received_at: str
    remote: str | None
    reason: str
    detail: str
    path: str
    headers: str
    body: bytes | None


@dataclass(frozen=True, slots=True)
class WriteProbe:
    """Asks the writer to prove the database takes a write, for /readyz."""

    received_at: str


@dataclass(frozen=True, slots=True)
class ReprocessedReject:
    """A quarantined body taken in after all: stored as ``push``, its reject marked in the same commit."""

    reject_id: int
    push: PushRecord


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One delivery attempt of a forward job, and the job's state after it."""

    job_id: int
    attempted_at: str
    status: int | None  # the HTTP status or the command's exit code; None when there was no answer
    seconds: float
    error: str | None
    state: str  # pending (tried again at next_attempt_at), delivered or dead
    next_attempt_at: float  # unix seconds
    # False when the failure was the destination's (it was paused): the job keeps its count of attempts.
    counted: bool = True


@dataclass(frozen=True, slots=True)
class PauseRecord:
    """A destination paused (``reason`` given; ``until`` None holds it until resumed) or no longer paused."""

    destination: str
    paused_at: str
    until: float | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class RetryRecord:
    """One job sent again now from a fresh attempt count (POST /api/deliveries/{id}/retry); its destination's
    pause ends with it."""

    job_id: int


Record = PushRecord | RejectRecord | WriteProbe | ReprocessedReject | AttemptRecord | PauseRecord | RetryRecord


class Outcome(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    NEW_VERSION = "new_version"  # a duplicate whose body differs from every stored one; added to push_versions
    STORED = "stored"  # rejects and probes


def push_summaries(records: Sequence[Record], outcomes: Sequence[Outcome]) -> list[dict[str, str]]:
    """What the event stream tells of each push in a committed batch (rejects and probes left out)."""
    return [
        {
            "outcome": outcome.value,
            "workflow_id": record.workflow_id,
            "node_id": record.node_id,
            "call_id": record.call_id,
            "received_at": record.received_at,
        }
        for record, outcome in zip(records, outcomes, strict=True)
        if isinstance(record, PushRecord)
    ]
