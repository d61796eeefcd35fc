"""Prometheus metrics of one running app: what the pushes did, how the writer keeps up, how fast we answer.

Each app gets its own registry so that several apps in one process (the tests) do not share counts.
Everything on the push path is a pre-bound child, so a push costs a dict look-up and an increment.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from plumbing import drill_state
from plumbing.version import VERSION
from storage.link import LinkHealth
from storage.outbox import Backlog
from storage.records import Outcome, Record

# The *_created series double every counter and say little for a long-running service.
disable_created_metrics()  # type: ignore[no-untyped-call]

PUSH_OUTCOMES = (Outcome.NEW, Outcome.DUPLICATE, Outcome.NEW_VERSION)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)
COMMIT_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ATTEMPT_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUEST_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """``reject_codes`` and ``unavailable_codes``: every code a refused push can be counted under, each
    exported at 0 from the start so that ``rate()`` over them is 0 rather than empty."""

    def __init__(self, reject_codes: Sequence[str], unavailable_codes: Sequence[str]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The standard process_*, python_info and python_gc_* series, as the default registry has them.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        build = Gauge("airudder_receiver_build_info", "The running version (always 1).", ["version"], registry=r)
        build.labels(VERSION).set(1)
        pushes = Counter(
            "airudder_receiver_pushes", "Pushes stored, by outcome (new call, duplicate, duplicate with a new body).",
            ["outcome"], registry=r,
        )  # fmt: skip
        self._by_outcome = {outcome: pushes.labels(outcome.value) for outcome in PUSH_OUTCOMES}
        self.rejected = Counter(
            "airudder_receiver_pushes_rejected", "Pushes refused with a 4xx answer, by error code.", ["reason"],
            registry=r,
        )  # fmt: skip
        for code in reject_codes:
            self.rejected.labels(code)
        self.unavailable = Counter(
            "airudder_receiver_pushes_unavailable", "Pushes answered 503 (the sender retries), by cause.", ["cause"],
            registry=r,
        )  # fmt: skip
        for code in unavailable_codes:
            self.unavailable.labels(code)
        self.queue_depth = Gauge("airudder_receiver_queue_depth", "Items waiting for the writer.", registry=r)
        self.batch_size = Histogram(
            "airudder_receiver_batch_size", "Items written per transaction.", buckets=BATCH_SIZES, registry=r
        )
        self.commit_seconds = Histogram(
            "airudder_receiver_commit_seconds", "Time to write and commit one batch.", buckets=COMMIT_SECONDS,
            registry=r,
        )  # fmt: skip
        self._request_seconds = Histogram(
            "airudder_receiver_request_seconds", "Time from request to answer, by route.", ["route"],
            buckets=REQUEST_SECONDS, registry=r,
        )  # fmt: skip
        self._request_children: dict[str, Histogram] = {}
        self.last_push = Gauge(
            "airudder_receiver_last_push_timestamp_seconds", "Unix time of the last stored push (0: none yet).",
            registry=r,
        )  # fmt: skip
        self._forwarded = Counter(
            "airudder_receiver_forward_attempts", "Delivery attempts to forwarding destinations, by destination and"
            " outcome (delivered; failed, to be tried again; dead, no attempts left).", ["destination", "outcome"],
            registry=r,
        )  # fmt: skip
        self._attempt_seconds = Histogram(
            "airudder_receiver_forward_attempt_seconds", "Time one delivery attempt took, by destination.",
            ["destination"], buckets=ATTEMPT_SECONDS, registry=r,
        )  # fmt: skip
        self._pending = Gauge(
            "airudder_receiver_forward_pending", "Deliveries waiting to be made, by destination.", ["destination"],
            registry=r,
        )  # fmt: skip
        self._oldest_pending = Gauge(
            "airudder_receiver_forward_oldest_pending_seconds",
            "Age of the oldest delivery still waiting, by destination (0: none waiting).", ["destination"], registry=r,
        )  # fmt: skip
        self._dead = Gauge(
            "airudder_receiver_forward_dead", "Deliveries that ran out of attempts, by destination (see forward"
            " retry-dead).", ["destination"], registry=r,
        )  # fmt: skip
        self._paused = Gauge(
            "airudder_receiver_forward_paused", "1 while a destination is paused (judged down, answered 410 or"
            " waiting for forward resume), else 0.", ["destination"], registry=r,
        )  # fmt: skip
        self._destinations: set[str] = set()
        self._database_bytes = Gauge(
            "airudder_receiver_database_bytes",
            "Size of the SQLite file and its write-ahead log (NaN on PostgreSQL: ask the server).",
            registry=r,
        )
        self._link = _DatabaseLink()
        r.register(self._link)

    def watch_database(self, size: Callable[[], float], health: LinkHealth) -> None:
        self._database_bytes.set_function(size)
        self._link.health = health

    def watch_drills(self, db_path: str) -> None:
        """The restore drills' results, which the drill command writes beside the SQLite file."""
        drilled = Gauge(
            "airudder_receiver_drill_success_timestamp_seconds",
            "Unix time the last successful restore drill finished (0: none yet).", registry=self.registry,
        )  # fmt: skip
        drilled.set_function(lambda: drill_state.last_success_timestamp(db_path))
        drill_age = Gauge(
            "airudder_receiver_drill_newest_push_age_seconds",
            "Age of the newest push that the last successful restore drill found in the replica (NaN: no drill).",
            registry=self.registry,
        )  # fmt: skip
        drill_age.set_function(lambda: drill_state.newest_push_age(db_path))

    def watch_queue(self, depth: Callable[[], int]) -> None:
        self.queue_depth.set_function(lambda: float(depth()))

    def add_routes(self, routes: Iterable[str]) -> None:
        """Each route's request histogram, at 0 before its first request."""
        for route in routes:
            self._request_children[route] = self._request_seconds.labels(route)

    def observe_request(self, route: str, seconds: float) -> None:
        child = self._request_children.get(route)
        if child is None:
            child = self._request_children[route] = self._request_seconds.labels(route)
        child.observe(seconds)

    def count_refusal(self, status: int, code: str) -> None:
        (self.unavailable if status >= 500 else self.rejected).labels(code).inc()

    def on_commit(self, records: Sequence[Record], outcomes: Sequence[Outcome], seconds: float) -> None:
        """Writer listener: one call per committed batch."""
        self.batch_size.observe(len(records))
        self.commit_seconds.observe(seconds)
        pushed = False
        # One increment per outcome, not per push: each takes the counter's lock.
        for outcome, count in collections.Counter(outcomes).items():
            counter = self._by_outcome.get(outcome)
            if counter is not None:
                counter.inc(count)
                pushed = True
        if pushed:
            self.last_push.set(time.time())

    def watch_destinations(self, names: Sequence[str]) -> None:
        """Show every configured destination from the start, at zero."""
        self._destinations.update(names)
        for name in names:
            for outcome in ("delivered", "failed", "dead"):
                self._forwarded.labels(name, outcome)
            self.observe_backlog({name: Backlog(0, None, 0)})
            self._paused.labels(name).set(0)

    def observe_attempt(self, destination: str, outcome: str, seconds: float) -> None:
        self._forwarded.labels(destination, outcome).inc()
        self._attempt_seconds.labels(destination).observe(seconds)

    def observe_pause(self, destination: str, paused: bool) -> None:
        self._paused.labels(destination).set(1 if paused else 0)

    def observe_backlog(self, backlogs: dict[str, Backlog]) -> None:
        """The dispatcher's periodic count; a destination not listed has nothing pending or dead."""
        now = time.time()
        for name in {*backlogs, *self._destinations}:
            b = backlogs.get(name, Backlog(0, None, 0))
            self._pending.labels(name).set(b.pending)
            oldest = b.oldest_pending_at
            self._oldest_pending.labels(name).set(max(0.0, now - _epoch(oldest)) if oldest else 0.0)
            self._dead.labels(name).set(b.dead)


def _epoch(stored: str) -> float:
    return datetime.fromisoformat(stored.replace("Z", "+00:00")).timestamp()


class _DatabaseLink(Collector):
    """Whether the database answers and how many connects to it failed, read from the backend when scraped."""

    def __init__(self) -> None:
        self.health: LinkHealth | None = None

    def collect(self) -> Iterator[Metric]:
        if self.health is None:
            return
        yield GaugeMetricFamily(
            "airudder_receiver_database_up",
            "1 while the database answers, 0 after a failed connect until one succeeds.",
            value=1.0 if self.health.reachable else 0.0,
        )
        yield CounterMetricFamily(
            "airudder_receiver_database_connect_failures",
            "Connects to the database that failed (each retry waits longer, up to a few seconds).",
            value=self.health.failed_connects,
        )
