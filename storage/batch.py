"""What is true of a batch on both databases: what each record asks for, which pushes are new, duplicates or
new versions of a stored call, and the outcome answered for each record.

Each backend looks up the stored hashes its own way and writes the rows its own way; the decisions are
made here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from storage.records import (
    AttemptRecord,
    Outcome,
    PauseRecord,
    PushRecord,
    Record,
    RejectRecord,
    ReprocessedReject,
    RetryRecord,
    WriteProbe,
)

Key = tuple[str, str, str]
# For each stored call of a batch: the hashes of its first body and of every version.
StoredHashes = dict[Key, set[bytes]]


@dataclass(slots=True)
class Split:
    """A batch by what each record asks for, in arrival order."""

    pushes: list[PushRecord]  # every push, a reprocessed reject's too
    rejects: list[RejectRecord]
    probes: list[WriteProbe]
    marks: list[ReprocessedReject]  # the rejects to mark as taken in
    attempts: list[AttemptRecord]
    steering: list[PauseRecord | RetryRecord]  # pauses set or ended, deliveries sent again


def _push_of(record: PushRecord | ReprocessedReject) -> PushRecord:
    return record.push if isinstance(record, ReprocessedReject) else record


def split_batch(records: Sequence[Record]) -> Split:
    return Split(
        pushes=[_push_of(r) for r in records if isinstance(r, PushRecord | ReprocessedReject)],
        rejects=[r for r in records if isinstance(r, RejectRecord)],
        probes=[r for r in records if isinstance(r, WriteProbe)],
        marks=[r for r in records if isinstance(r, ReprocessedReject)],
        attempts=[r for r in records if isinstance(r, AttemptRecord)],
        steering=[r for r in records if isinstance(r, PauseRecord | RetryRecord)],
    )


def outcomes_in_order(records: Sequence[Record], push_outcomes: Sequence[Outcome]) -> list[Outcome]:
    """One outcome per record: the pushes' in turn, STORED for the rest."""
    outcomes = iter(push_outcomes)
    return [next(outcomes) if isinstance(r, PushRecord | ReprocessedReject) else Outcome.STORED for r in records]


def add_stored(stored: StoredHashes, key: Key, first_hash: bytes, version_hash: bytes | None) -> None:
    """One looked-up row (a stored call's first body hash and one version's, or None) into ``stored``."""
    hashes = stored.setdefault(key, {first_hash})
    if version_hash is not None:
        hashes.add(version_hash)


# The columns of a new call's row, in the order ``push_row`` gives them (``seq`` is the database's, and
# ``deliveries`` starts at 1).
PUSH_ROW_COLUMNS = (
    "workflow_id",
    "node_id",
    "call_id",
    "workflow_name",
    "node_name",
    "case_id",
    "callee_number",
    "task_id",
    "robot_id",
    "call_start_time",
    "call_end_time",
    "intention",
    "hangup_type",
    "ring_type",
    "first_received_at",
    "last_received_at",
    "warnings",
    "body_hash",
    "body",
)


# The typed columns that a later, differing body of a call brings up to date: all but the key, the receive
# times and the first body (which stays, with the later ones in push_versions).
LATEST_COLUMNS = (*PUSH_ROW_COLUMNS[3 : PUSH_ROW_COLUMNS.index("first_received_at")], "warnings")


def latest_values(p: PushRecord) -> tuple[object, ...]:
    """A new version's values of LATEST_COLUMNS, in that order."""
    row = dict(zip(PUSH_ROW_COLUMNS, push_row(p), strict=True))
    return tuple(row[column] for column in LATEST_COLUMNS)


def push_row(p: PushRecord) -> tuple[object, ...]:
    """A new call's values, in the order of PUSH_ROW_COLUMNS."""
    return (
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


@dataclass(slots=True)
class Classified:
    """A batch's pushes sorted into what to write: new calls, extra deliveries and new versions."""

    outcomes: list[Outcome] = field(default_factory=list)
    new: list[PushRecord] = field(default_factory=list)
    repeated: list[PushRecord] = field(default_factory=list)  # each one more delivery of a stored call
    versions: list[PushRecord] = field(default_factory=list)  # a body differing from every stored one


def classify(pushes: Sequence[PushRecord], stored: StoredHashes) -> Classified:
    """Split a batch into new calls, extra deliveries and new versions, in arrival order.

    ``stored`` is updated as calls and versions are added, so a body repeated inside one batch counts as a
    duplicate, and a body equal to any stored one (first or version) adds no version.
    """
    result = Classified()
    for p in pushes:
        hashes = stored.get(p.key)
        if hashes is None:
            stored[p.key] = {p.body_hash}
            result.outcomes.append(Outcome.NEW)
            result.new.append(p)
            continue
        result.repeated.append(p)
        if p.body_hash in hashes:
            result.outcomes.append(Outcome.DUPLICATE)
        else:
            hashes.add(p.body_hash)
            result.outcomes.append(Outcome.NEW_VERSION)
            result.versions.append(p)
    return result
