"""How many request log lines a flood writes: each request gets its own line up to a number per second,
and the rest of that second are counted into one summary line.

At a few pushes a second (a workflow's usual pace) every request is still a line of its own. Under a flood,
one line per request is the largest cost a push has after parsing, and journald drops lines past its own
rate limit anyway; the summary says how many requests were answered and how, so the log still shows that
pushes arrive. Errors (a status of 400 or more) have an allowance of their own, as large: a stranger's
flood of 404s neither fills the log nor hides the lines of the pushes that arrive meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

log = logging.getLogger("airudder_receiver.http")


class RequestLines:
    def __init__(self, per_second: int) -> None:
        self._per_second = per_second
        self._second = -1
        self._answered = 0
        self._errors = 0
        self._held: Counter[tuple[str, str, object]] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    def take(self, error: bool) -> bool:
        """Whether a request (an ``error`` or not) gets its own line now; if not, the caller ``hold``s it."""
        second = int(time.monotonic())
        if second != self._second:
            self._second = second
            self._answered = self._errors = 0
        if error:
            self._errors += 1
            return self._errors <= self._per_second
        self._answered += 1
        return self._answered <= self._per_second

    def hold(self, what: tuple[str, str, object]) -> None:
        """Count a request left out by method, route and outcome (or error code, or status); the summary
        follows within a second."""
        if not self._held:
            self._timer = asyncio.get_running_loop().call_later(1.0, self.flush)
        self._held[what] += 1

    def flush(self) -> None:
        """Write the summary of what was held back, if anything was (also called at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._held:
            return
        held = sum(self._held.values())
        kinds = ", ".join(" ".join(map(str, (*what, count))) for what, count in self._held.most_common())
        log.info(
            "%d more requests answered in the last second, past the %d a second logged one by one: %s",
            held, self._per_second, kinds, extra={"fields": {"held_back": held}},
        )  # fmt: skip
        self._held.clear()
