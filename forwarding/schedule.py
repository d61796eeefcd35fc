"""When a failed delivery is tried again: doubling delays with jitter, and what ``Retry-After`` asks for.

The n-th retry waits between half and all of ``min(cap, base * 2**(n-1))``: the jitter spreads retries of
many deliveries that failed together, and the lower half bound keeps the schedule's length known (the
table in docs/forwarding.md).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A Retry-After longer than this is taken as this: a downstream cannot park a delivery for weeks.
MAX_RETRY_AFTER = 86400.0


def nominal_delay(failures: int, base: float, cap: float) -> float:
    """The upper bound of the wait after the ``failures``-th failure (1 for the first)."""
    return min(cap, base * 2.0 ** min(failures - 1, 60))


def retry_delay(failures: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    nominal = nominal_delay(failures, base, cap)
    return nominal / 2 + (rng or random).uniform(0, nominal / 2)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)
