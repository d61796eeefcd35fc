"""Which pushes a reader wants, parsed from text: an /api query string or command-line flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from storage.records import utc_text

# Typed columns a reader may match exactly.
EXACT_FILTERS = ("workflow_id", "node_id", "call_id", "case_id", "callee_number", "task_id", "intention")
TIME_FILTERS = ("since", "until")
ORDERS = ("oldest", "newest")


class FilterError(ValueError):
    """A filter value that cannot be used; the message is one sentence naming the parameter."""


@dataclass(frozen=True)
class PushFilter:
    """Exact matches on typed columns, a received-time window, and the cursors (seq after ``after``,
    below ``before``), oldest first unless ``newest_first``."""

    equals: tuple[tuple[str, str], ...] = ()
    since: str | None = None  # first_received_at >= since
    until: str | None = None  # first_received_at < until
    after: int = 0
    before: int | None = None
    newest_first: bool = False


def parse_int(name: str, text: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise FilterError(f"{name} must be an integer, not {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise FilterError(f"{name} must be {bound}, not {value}")
    return value


def parse_after(params: Mapping[str, str]) -> int:
    """The cursor: a seq (or reject id) already seen; 0 starts from the beginning."""
    text = params.get("after")
    return 0 if text is None else parse_int("after", text, 0)


def parse_time(name: str, text: str) -> str:
    """ISO 8601 (a date, or a date and time with or without offset; no offset means UTC) as stored.

    Receive times are stored as ``2026-11-24T19:47:09.123Z``, which sorts as text, so the bound is
    turned into exactly that form.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(f"{name} must be an ISO 8601 time such as 2026-11-24T19:47:09Z, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return utc_text(moment)


def parse_push_filter(params: Mapping[str, str]) -> PushFilter:
    """Build a filter from EXACT_FILTERS, TIME_FILTERS, ``after``, ``before`` and ``order``; others are ignored."""
    equals = []
    for name in EXACT_FILTERS:
        value = params.get(name)
        if value is not None:
            if not value:
                raise FilterError(f"{name} must not be empty")
            equals.append((name, value))
    since = parse_time("since", params["since"]) if params.get("since") is not None else None
    until = parse_time("until", params["until"]) if params.get("until") is not None else None
    if since is not None and until is not None and since >= until:
        raise FilterError(f"since ({since}) must be before until ({until})")
    before = parse_int("before", params["before"], 1) if params.get("before") is not None else None
    order = params.get("order", "oldest")
    if order not in ORDERS:
        raise FilterError(f"order must be {' or '.join(ORDERS)}, not {order!r}")
    return PushFilter(tuple(equals), since, until, parse_after(params), before, order == "newest")
