"""Prometheus metrics of one running app: what the pushes did, how the writer keeps up, how fast we answer.

Each app gets its own registry so that several apps in one process (the tests) do not share counts.
Everything on the push path is a pre-bound child, so a push costs a dict look-up and an increment.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence

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

from plumbing.version import VERSION
from storage.records import Outcome, Record

# The *_created series double every counter and say little for a long-running service.
disable_created_metrics()  # type: ignore[no-untyped-call]

PUSH_OUTCOMES = (Outcome.NEW, Outcome.DUPLICATE, Outcome.NEW_VERSION)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)
COMMIT_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REQUEST_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """``reject_codes`` and ``unavailable_codes``: every code a refused push can be counted under, each
    exported at 0 from the start so that ``rate()`` over them is 0 rather than empty."""

    def __init__(self, db_path: str, reject_codes: Sequence[str], unavailable_codes: Sequence[str]) -> None:
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
        database = Gauge(
            "airudder_receiver_database_bytes", "Size of the SQLite file and its write-ahead log.", registry=r
        )
        database.set_function(lambda: _file_bytes(db_path) + _file_bytes(db_path + "-wal"))

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
        for outcome in outcomes:
            counter = self._by_outcome.get(outcome)
            if counter is not None:
                counter.inc()
                pushed = True
        if pushed:
            self.last_push.set(time.time())


def _file_bytes(path: str) -> float:
    try:
        return float(os.stat(path).st_size)
    except OSError:
        return 0.0
