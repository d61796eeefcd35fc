"""Which pushes a reader wants, parsed from text: an /api query string or command-line flags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from storage.records import utc_text

# Typed columns a reader may match exactly.
EXACT_FILTERS = (
    "workflow_id", "node_id", "call_id", "workflow_name", "node_name",
    "case_id", "callee_number", "task_id", "intention",
)  # fmt: skip
TIME_FILTERS = ("since", "until")
ORDERS = ("oldest", "newest")
# The largest seq SQLite can store (a signed 64-bit integer): a larger cursor cannot be bound to a query.
MAX_SEQ = 2**63 - 1
# Bounds outside the years a datetime can hold, as stored text: before and after every stored time.
_EARLIEST, _LATEST = "0000-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"


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
    return 0 if text is None else parse_int("after", text, 0, MAX_SEQ)


def parse_time(name: str, text: str) -> str:
    """ISO 8601 (a date, or a date and time with or without offset; no offset means UTC) as stored.

    Receive times are stored as ``2026-11-24T19:47:09.123Z``, which sorts as text, so the bound is
    turned into exactly that form.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        if _plus_became_space(text):
            raise FilterError(
                f"{name} {text!r} has a space where its offset's '+' was: a '+' in a query string means a space, "
                f"so write it as %2B (e.g. {name}=2026-11-24T19:47:09%2B02:00) or give the time in UTC with Z"
            ) from None
        raise FilterError(f"{name} must be an ISO 8601 time such as 2026-11-24T19:47:09Z, not {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return utc_text(moment)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00, whose UTC time falls in year 0
        return _EARLIEST if moment.year == 1 else _LATEST


def _plus_became_space(text: str) -> bool:
    """Whether ``text`` reads as a time once its last space is a '+' again (``...T19:47:09 02:00``)."""
    head, space, offset = text.rpartition(" ")
    if not space or not offset[:2].isdigit():
        return False
    try:
        datetime.fromisoformat(f"{head}+{offset}")
    except ValueError:
        return False
    return True


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
    return PushFilter(tuple(equals), since, until, *parse_cursor(params))


def parse_cursor(params: Mapping[str, str]) -> tuple[int, int | None, bool]:
    """``after``, ``before`` and whether ``order`` is newest first."""
    before = parse_int("before", params["before"], 1, MAX_SEQ) if params.get("before") is not None else None
    order = params.get("order", "oldest")
    if order not in ORDERS:
        raise FilterError(f"order must be {' or '.join(ORDERS)}, not {order!r}")
    return parse_after(params), before, order == "newest"
