"""The dispatcher: claims due forward jobs from the outbox in small pages and delivers them.

Jobs live in the database (storage/outbox.py), never in memory beyond what is being sent: each
destination has a lane of at most ``concurrency`` deliveries being sent, and the page claimed for it is no
larger than that. Every receiver sharing a PostgreSQL database runs a dispatcher; a claim hands a job to
one of them at a time, for a lease that ends by itself if that receiver dies.

An attempt's outcome goes to the writer like any other record, so the one write connection stays the
writer's. A sent job frees its slot at once (waiting for the commit would cap a lane
at ``concurrency`` per commit time), but is left out of the reads until its record is committed, so it is
never sent twice at once.

A destination that looks down (no answer, a timeout, 408/429/502/503/504 or any Retry-After) is paused
as a whole on the same doubling schedule as a single job, then probed with one delivery at a time until
one goes through: an outage costs one attempt per step of the schedule, not one per waiting push. Other
failures (a 500 or a 400 for one body) only delay that job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from forwarding import senders
from forwarding.schedule import retry_delay
from plumbing.destinations import Destination
from storage.outbox import Backlog, Job, Outbox
from storage.records import AttemptRecord, utc_now
from storage.writer import STORE_ERRORS, Writer

log = logging.getLogger("airudder_receiver.forward")

# Longest sleep between two looks at the file: a replay by the command line is picked up within this.
POLL_SECONDS = 1.0
BACKLOG_SECONDS = 5.0
# With more records than this waiting for the writer, no new delivery starts: ingestion goes first, and
# deliveries catch up when the flood eases (the outbox is in the file, so nothing is lost meanwhile).
BUSY_QUEUE = 32
BUSY_WAIT = 0.02
# How long an attempt's record may wait for its commit; after that the job is simply tried again later.
RECORD_SECONDS = 10.0


def lease(destination: Destination) -> float:
    """How long a claimed job stays this receiver's: its send, at most ``timeout``, and its record's commit."""
    return destination.timeout + RECORD_SECONDS


class Observer(Protocol):
    def observe_attempt(self, destination: str, outcome: str, seconds: float) -> None: ...

    def observe_backlog(self, backlogs: dict[str, Backlog]) -> None: ...


@dataclass
class _Lane:
    destination: Destination
    sending: set[int] = field(default_factory=set)  # job ids being sent: at most the capacity
    unsettled: set[int] = field(default_factory=set)  # sending, or sent with the outcome not yet committed
    failures: int = 0  # destination-level failures in a row
    paused_until: float = 0.0
    paused_at: float = 0.0

    @property
    def capacity(self) -> int:
        return 1 if self.failures else self.destination.concurrency


class Dispatcher:
    def __init__(self, destinations: Sequence[Destination], jobs: Outbox, writer: Writer, observer: Observer) -> None:
        self._lanes = [_Lane(d) for d in destinations]
        self._outbox = jobs
        self._writer = writer
        self._observer = observer
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """New jobs were committed (or a slot came free): look at the file now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        # limit=0: each lane bounds its own concurrency.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self._task = asyncio.create_task(self._run(), name="airudder-receiver-forward")

    async def close(self, grace: float) -> None:
        """Stop taking jobs; deliveries still in flight after ``grace`` seconds are cancelled and stay pending."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._tasks:
            _, unfinished = await asyncio.wait(self._tasks, timeout=grace)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
            if unfinished:
                log.info(
                    "stopped %d deliveries in flight; they stay pending and are sent after the restart", len(unfinished)
                )
        if self._session is not None:
            await self._session.close()
        await self._outbox.close()

    async def _run(self) -> None:
        next_backlog = 0.0
        while True:
            self._wake.clear()
            wait = POLL_SECONDS
            try:
                for lane in self._lanes:
                    wait = min(wait, await self._fill(lane))
                if time.monotonic() >= next_backlog:
                    next_backlog = time.monotonic() + BACKLOG_SECONDS
                    self._observer.observe_backlog(await self._outbox.backlog())
            except Exception as exc:  # the file is busy or broken: say so and look again later
                log.error("reading forward jobs failed: %s", exc)
                wait = POLL_SECONDS
            try:
                async with asyncio.timeout(max(wait, 0.005)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _fill(self, lane: _Lane) -> float:
        """Start the lane's due jobs up to its free slots; how long until it may have more to start."""
        now = time.time()
        if lane.paused_until > now:
            return lane.paused_until - now
        if self._writer.depth > BUSY_QUEUE:
            return BUSY_WAIT  # pushes are waiting for the writer: they go first
        free = lane.capacity - len(lane.sending)
        # Refilled in bunches: a read per finished delivery would cost a hop to the reader's thread each.
        # A finished delivery wakes the loop.
        if free <= 0 or (lane.sending and free < lane.capacity // 4):
            return POLL_SECONDS
        # Jobs sent but not yet recorded are still pending in the database: they are left out.
        claimed = await self._outbox.claim(lane.destination.name, free, lane.unsettled, lease(lane.destination))
        for job in claimed.jobs:
            lane.sending.add(job.id)
            lane.unsettled.add(job.id)
            task = asyncio.create_task(self._deliver(lane, job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not claimed.jobs and claimed.next_due is not None:
            return max(claimed.next_due - now, 0.0)
        return POLL_SECONDS

    async def _deliver(self, lane: _Lane, job: Job) -> None:
        destination = lane.destination
        try:
            attempted_at = utc_now()
            started = time.time()
            clock = time.perf_counter()
            result = await self._send(destination, job)
            seconds = time.perf_counter() - clock
            record = self._judge(lane, job, result, started, attempted_at, seconds)
            lane.sending.discard(job.id)
            self._wake.set()
            self._observer.observe_attempt(
                destination.name, record.state if record.state != "pending" else "failed", seconds
            )
            try:
                await self._writer.store(record, wait=True, size=0, commit_within=RECORD_SECONDS)
            except STORE_ERRORS as exc:
                # The attempt is not recorded, so the job is tried again: at least once, never lost.
                log.warning(
                    "could not record a delivery attempt to %s (%s); it will be tried again", destination.name, exc
                )
                lane.paused_until = max(lane.paused_until, time.time() + POLL_SECONDS)
        finally:
            lane.sending.discard(job.id)
            lane.unsettled.discard(job.id)
            self._wake.set()

    async def _send(self, destination: Destination, job: Job) -> senders.Result:
        if job.body is None:
            return senders.Result(None, "the body was purged before it could be delivered")
        try:
            if destination.url:
                assert self._session is not None
                return await senders.post(self._session, destination, job, job.body.encode())
            return await senders.run_command(destination, job, job.body.encode())
        except Exception as exc:  # a sender's own failure is a failed attempt, recorded like any other
            log.exception("delivery %s to %s failed in the sender", job.idempotency_key, destination.name)
            return senders.Result(None, senders.short(f"{type(exc).__name__}: {exc}"))

    @staticmethod
    def _judge(
        lane: _Lane, job: Job, result: senders.Result, started: float, attempted_at: str, seconds: float
    ) -> AttemptRecord:
        d = lane.destination
        now = time.time()
        if result.delivered:
            lane.failures = 0
            return AttemptRecord(job.id, attempted_at, result.status, seconds, None, "delivered", job.next_attempt_at)
        # Deliveries that started before the lane was paused failed for the reason that paused it.
        if result.unavailable and started >= lane.paused_at:
            lane.failures += 1
            pause = max(retry_delay(lane.failures, d.backoff_base, d.backoff_cap), result.retry_after or 0.0)
            lane.paused_at, lane.paused_until = now, now + pause
            log.warning("forward destination %s looks unavailable (%s); next try in %.1fs", d.name, result.error, pause)
        failures = job.attempts + 1
        if failures >= d.max_attempts or job.body is None:
            log.error(
                "delivery %s to %s is dead after %d attempts: %s", job.idempotency_key, d.name, failures, result.error
            )
            return AttemptRecord(
                job.id, attempted_at, result.status, seconds, result.error, "dead", job.next_attempt_at
            )
        delay = max(retry_delay(failures, d.backoff_base, d.backoff_cap), result.retry_after or 0.0)
        return AttemptRecord(job.id, attempted_at, result.status, seconds, result.error, "pending", now + delay)
