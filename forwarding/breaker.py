"""Whether a destination is up, judged by its recent failure rate: a circuit breaker, as Convoy has one.

Closed (the destination is up): every attempt's outcome goes into one-second buckets covering the last
``breaker_window`` seconds. When at least ``breaker_min_requests`` attempts are in the window and at least
``breaker_ratio`` of them failed for want of the destination (no answer, a timeout, 408, 429, 502, 503,
504; a program that could not start or was killed), the breaker opens: one failure, or a flapping
destination that fails half its attempts, never pauses it. Other failures (a 500, a refusing 4xx, a
program's exit code) are answers about one body, and count as the destination being up.

Open (paused): nothing is sent until the probe time, then one delivery at a time probes the destination.
A probe that fails pushes the next one further out, doubling from ``backoff_base`` up to ``probe_cap``; the
first answer closes the breaker. So once the destination is back, deliveries resume within ``probe_cap``
(and the probe itself), however long it was away.

Held: a 410 answer, or an operator, pauses the destination until someone resumes it.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from forwarding.schedule import retry_delay
from plumbing.destinations import Destination


@dataclass(frozen=True, slots=True)
class Pause:
    """Why and until when a destination is paused; ``until`` is None while it is held for an operator."""

    until: float | None
    reason: str


class Breaker:
    def __init__(
        self, destination: Destination, clock: Callable[[], float] = time.time, rng: random.Random | None = None
    ) -> None:
        self._d = destination
        self._clock = clock
        self._rng = rng
        self._buckets: deque[list[int]] = deque()  # [second, attempts, failures], oldest first
        self._attempts = 0
        self._failures = 0
        self._trips = 0  # probes failed in a row since the breaker opened, counting the opening
        self.pause: Pause | None = None
        self.opened_at = 0.0

    @property
    def closed(self) -> bool:
        return self.pause is None

    def capacity(self) -> int:
        """How many deliveries may be in flight now: all the slots, one probe, or none."""
        if self.pause is None:
            return self._d.concurrency
        if self.pause.until is None or self._clock() < self.pause.until:
            return 0
        return 1

    def wait(self) -> float | None:
        """Seconds until the next probe may start (0 when closed); None while held for an operator."""
        if self.pause is None:
            return 0.0
        if self.pause.until is None:
            return None
        return max(0.0, self.pause.until - self._clock())

    def record(self, started: float, failed: bool, reason: str = "", retry_after: float | None = None) -> bool:
        """Take one attempt's outcome; whether the failure was the destination's (the breaker is open after it).

        ``started`` tells attempts sent before the breaker opened: they failed for the reason that opened it
        and say nothing new."""
        now = self._clock()
        if self.pause is not None:
            if started < self.opened_at or self.pause.until is None:
                return True
            if not failed:  # the probe was answered: the destination is back
                self.close()
                return False
            self._trips += 1
            self._open(now, reason, retry_after)
            return True
        self._count(now, failed)
        d = self._d
        if failed and self._attempts >= d.breaker_min_requests and self._failures >= d.breaker_ratio * self._attempts:
            self._trips = 1
            self._open(now, reason, retry_after)
            return True
        return False

    def hold(self, reason: str) -> None:
        """Pause until resumed: the destination said it wants no more (410), or an operator paused it."""
        self.opened_at = self._clock()
        self.pause = Pause(None, reason)

    def adopt(self, pause: Pause) -> None:
        """Take a pause found stored (another receiver's, or this one's before a restart)."""
        self.opened_at = self._clock()
        self._trips = max(self._trips, 1)
        self.pause = pause

    def close(self) -> None:
        self.pause = None
        self._trips = 0
        self._buckets.clear()
        self._attempts = self._failures = 0

    def _open(self, now: float, reason: str, retry_after: float | None) -> None:
        d = self._d
        delay = max(retry_delay(self._trips, d.backoff_base, d.probe_cap, self._rng), retry_after or 0.0)
        self.opened_at = now
        self.pause = Pause(now + delay, reason)

    def _count(self, now: float, failed: bool) -> None:
        second = int(now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append([second, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += failed
        self._attempts += 1
        self._failures += failed
        horizon = now - self._d.breaker_window
        while self._buckets[0][0] < horizon:
            _, attempts, failures = self._buckets.popleft()
            self._attempts -= attempts
            self._failures -= failures
