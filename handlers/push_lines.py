"""One readable line per stored push, for a developer watching an AIRudder workflow deliver."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from storage.records import Outcome, PushRecord, Record

log = logging.getLogger("airudder_receiver.pushes")
# log_pushes is its own switch: with log_level = "warning" the request lines go quiet and these stay.
log.setLevel(logging.INFO)

_OUTCOME_WORDS = {
    Outcome.NEW: "new",
    Outcome.DUPLICATE: "duplicate",
    Outcome.NEW_VERSION: "duplicate, changed body",
}


def describe(record: PushRecord, outcome: Outcome) -> str:
    """e.g. ``push new        test_api_action6 / API2  callee +8613... intention E``; the log line adds the time."""
    where = f"{record.workflow_name or record.workflow_id} / {record.node_name or record.node_id}"
    return (
        f"push {_OUTCOME_WORDS.get(outcome, outcome.value):<9}  {where}  "
        f"callee {record.callee_number or '-'}  intention {record.intention or '-'}"
    )


def log_pushes(records: Sequence[Record], outcomes: Sequence[Outcome], seconds: float) -> None:
    """Writer listener for ``--dev``."""
    for record, outcome in zip(records, outcomes, strict=True):
        if isinstance(record, PushRecord):
            log.info("%s", describe(record, outcome))
