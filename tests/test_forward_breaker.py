"""The breaker that judges a destination down by its recent failure rate, on a fake clock: what opens it,
what it probes with, and how soon a destination that is back gets its deliveries, whatever the outage."""

from __future__ import annotations

import random

import pytest

from forwarding.breaker import Breaker
from plumbing.destinations import Destination
from tests.support import report

CRM = Destination(name="crm", command=("true",))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, seed: int = 1, **changes: float) -> Breaker:
    destination = Destination(name="crm", command=("true",), **changes)  # type: ignore[arg-type]
    return Breaker(destination, clock, random.Random(seed))


def test_a_destination_failing_every_first_attempt_is_never_judged_down() -> None:
    clock = Clock()
    flapping = breaker(clock)
    for _ in range(500):  # each delivery: a 503, then a 200
        assert not flapping.record(clock.now, failed=True, reason="HTTP 503")
        clock.now += 0.1
        flapping.record(clock.now, failed=False)
        clock.now += 0.1
    assert flapping.closed
    assert flapping.capacity() == CRM.concurrency


def test_one_failure_or_too_few_attempts_never_open_it() -> None:
    clock = Clock()
    few = breaker(clock)
    for _ in range(CRM.breaker_min_requests - 1):
        assert not few.record(clock.now, failed=True)
    assert few.closed
    assert few.record(clock.now, failed=True, reason="HTTP 503")  # the fifth failure of five
    assert few.pause is not None
    assert few.pause.reason == "HTTP 503"
    assert few.capacity() == 0


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    slow_drip = breaker(clock)
    for _ in range(20):  # a failure every 20 s: never five within a minute
        assert not slow_drip.record(clock.now, failed=True)
        clock.now += 20
    assert slow_drip.closed


def test_while_open_one_probe_at_a_time_on_a_doubling_schedule_up_to_the_cap() -> None:
    clock = Clock()
    down = breaker(clock, backoff_base=5, probe_cap=60)
    for _ in range(5):
        down.record(clock.now, failed=True)
    waits = []
    for _ in range(8):
        wait = down.wait()
        assert wait is not None
        waits.append(wait)
        clock.now += wait - 0.01
        assert down.capacity() == 0
        clock.now += 0.01
        assert down.capacity() == 1  # one probe, never the whole lane
        assert down.record(clock.now, failed=True)
    nominal = [5, 10, 20, 40, 60, 60, 60, 60]
    assert all(n / 2 <= w <= n for w, n in zip(waits, nominal, strict=True)), waits
    # An attempt sent before the breaker opened says nothing new when it fails, nor when it succeeds.
    assert down.record(clock.now - 100, failed=False)
    assert not down.closed
    clock.now += 60
    assert not down.record(clock.now, failed=False)  # the probe is answered: open again
    assert down.closed
    assert down.capacity() == CRM.concurrency


def test_a_hold_waits_for_an_operator() -> None:
    clock = Clock()
    gone = breaker(clock)
    gone.hold("HTTP 410 Gone")
    clock.now += 86400
    assert gone.capacity() == 0
    assert gone.wait() is None
    assert gone.record(clock.now, failed=False)  # a delivery in flight does not lift it
    gone.close()
    assert gone.capacity() == CRM.concurrency


def recovery(outage: float, seed: int) -> float:
    """Seconds from a refusing destination's return to its first delivery, with deliveries always waiting:
    attempts go out whenever the breaker lets one (an instant refusal while down, as a closed port gives)."""
    clock = Clock()
    lane = breaker(clock, seed)
    back = clock.now + outage
    while True:
        if lane.capacity():
            up = clock.now >= back
            lane.record(clock.now, failed=not up)
            if up:
                return clock.now - back
        wait = lane.wait()
        assert wait is not None
        clock.now += max(wait, 0.05)  # a closed lane: the next delivery's own retry, 50 ms on


@pytest.mark.parametrize("minutes", [1, 5, 30])
def test_deliveries_resume_within_the_probe_cap_whatever_the_outage_length(minutes: int) -> None:
    # 200 jitter draws each; the cap is the bound.
    waits = [recovery(minutes * 60.0, seed) for seed in range(200)]
    report(f"recovery after a {minutes} min outage", median=f"{sorted(waits)[100]:.1f}s", worst=f"{max(waits):.1f}s")
    assert max(waits) <= max(CRM.probe_cap, 60.0)
