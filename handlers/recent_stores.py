"""Whether the pushes of the last seconds were stored, for /readyz.

/readyz's probe writes one small row; that can commit while the pushes fail (a full disk still has room for
the probe's row, not for a 40 KB body), and then the probe alone would call the server ready while most
senders get 503. So every push answered records whether it was stored, and /readyz reports a problem
while at least half of those of the last WINDOW_SECONDS were not.

A push refused with a 4xx says nothing about storage and is not recorded. With ``ack = "queued"`` a push is
recorded when it is queued; a batch that fails later is not seen here.
"""

from __future__ import annotations

import collections
import time

WINDOW_SECONDS = 10.0
# The newest answers kept: enough for a clear majority, few enough to count on each /readyz.
KEPT = 64


class RecentStores:
    def __init__(self) -> None:
        self._answers: collections.deque[tuple[float, bool]] = collections.deque(maxlen=KEPT)

    def record(self, stored: bool) -> None:
        self._answers.append((time.monotonic(), stored))

    def problem(self) -> str | None:
        since = time.monotonic() - WINDOW_SECONDS
        recent = [stored for at, stored in self._answers if at >= since]
        failed = recent.count(False)
        if failed and 2 * failed >= len(recent):
            return f"{failed} of the last {len(recent)} pushes (within {WINDOW_SECONDS:g} s) were not stored"
        return None
