"""The dispatcher: claims due forward jobs from the outbox in small pages and delivers them.

Jobs live in the database (storage/outbox.py), never in memory beyond what is being sent: each
destination has a lane of at most ``concurrency`` deliveries being sent, and the page claimed for it is no
larger than that. Every receiver sharing a PostgreSQL database runs a dispatcher; a claim hands a job to
one of them at a time, for a lease that ends by itself if that receiver dies.

An attempt's outcome goes to the writer like any other record, so the one write connection stays the
writer's. A sent job frees its slot at once (waiting for the commit would cap a lane
at ``concurrency`` per commit time), but is left out of the reads until its record is committed, so it is
never sent twice at once.

Whether a destination is down is the breaker's call (forwarding/breaker.py), from the failure rate of its
recent attempts: a failure alone (a timeout included) only delays that delivery on its own schedule. While
the breaker is open, one delivery at a time probes the destination; the failures it meets are the
destination's, so they leave the delivery's schedule where it was (still due) and never make it dead.
The pause is written to the database and read back every second: a pause that the command line, the API
or another receiver ended or set there is taken up within that second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from forwarding import senders
from forwarding.breaker import Breaker, Pause
from forwarding.verdict import judge
from plumbing.destinations import Destination
from storage.outbox import Backlog, Job, Outbox
from storage.records import PauseRecord, utc_now
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

    def observe_pause(self, destination: str, paused: bool) -> None: ...


@dataclass
class _Lane:
    destination: Destination
    breaker: Breaker
    sending: set[int] = field(default_factory=set)  # job ids being sent: at most the capacity
    unsettled: set[int] = field(default_factory=set)  # sending, or sent with the outcome not yet committed
    # Until when the lane starts nothing because an outcome could not be recorded.
    stalled_until: float = 0.0
    # The pause as this dispatcher last wrote or read it in the database, and its writes not yet committed: a
    # row that differs while none are under way was changed by someone else (forward resume, a replay, the
    # API's retry, another receiver).
    stored: Pause | None = None
    writing: int = 0
    unsaved: bool = False  # the last write of the pause failed: it is written again, not overwritten by the stored one


class Dispatcher:
    def __init__(self, destinations: Sequence[Destination], jobs: Outbox, writer: Writer, observer: Observer) -> None:
        self._lanes = [_Lane(d, Breaker(d)) for d in destinations]
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
        next_backlog = next_pauses = 0.0
        while True:
            self._wake.clear()
            wait = POLL_SECONDS
            try:
                if time.monotonic() >= next_pauses:
                    next_pauses = time.monotonic() + POLL_SECONDS
                    await self._read_pauses()
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

    async def _read_pauses(self) -> None:
        """Take up what changed in the stored pauses since this dispatcher last wrote them: within a second."""
        found = await self._outbox.pauses()
        for lane in self._lanes:
            row = found.get(lane.destination.name)
            stored = Pause(*row) if row is not None else None
            if lane.unsaved and not lane.writing:
                self._spawn(self._save_pause(lane))
            if lane.writing or lane.unsaved or stored == lane.stored:
                continue
            lane.stored = stored
            if stored is None:
                log.info("forward destination %s was resumed: sending again", lane.destination.name)
                lane.breaker.close()
            else:
                lane.breaker.adopt(stored)
            self._observer.observe_pause(lane.destination.name, stored is not None)

    async def _save_pause(self, lane: _Lane) -> None:
        """Store the breaker's pause when it changed, for the command line, the API and other receivers."""
        pause = lane.breaker.pause
        if pause == lane.stored and not lane.unsaved:
            return
        name = lane.destination.name
        self._observer.observe_pause(name, pause is not None)
        lane.writing += 1
        lane.unsaved = False
        try:
            until, reason = (pause.until, pause.reason) if pause else (None, None)
            record = PauseRecord(name, utc_now(), until, reason)
            await self._writer.store(record, wait=True, size=0, commit_within=RECORD_SECONDS)
            lane.stored = pause
        except STORE_ERRORS as exc:
            log.warning("could not record the pause of %s (%s); writing it again in a second", name, exc)
            lane.unsaved = True
        finally:
            lane.writing -= 1

    async def _fill(self, lane: _Lane) -> float:
        """Start the lane's due jobs up to its free slots; how long until it may have more to start."""
        now = time.time()
        if lane.stalled_until > now:
            return lane.stalled_until - now
        capacity = lane.breaker.capacity()
        if not capacity:
            wait = lane.breaker.wait()
            return POLL_SECONDS if wait is None else wait
        if self._writer.depth > BUSY_QUEUE:
            return BUSY_WAIT  # pushes are waiting for the writer: they go first
        free = capacity - len(lane.sending)
        # Refilled in bunches: a read per finished delivery would cost a hop to the reader's thread each.
        # A finished delivery wakes the loop.
        if free <= 0 or (lane.sending and free < capacity // 4):
            return POLL_SECONDS
        # Jobs sent but not yet recorded are still pending in the database: they are left out.
        per_call = lane.destination.order == "per_call"
        claimed = await self._outbox.claim(
            lane.destination.name, free, lane.unsettled, lease(lane.destination), per_call
        )
        for job in claimed.jobs:
            lane.sending.add(job.id)
            lane.unsettled.add(job.id)
            self._spawn(self._deliver(lane, job))
        if not claimed.jobs and claimed.next_due is not None:
            return max(claimed.next_due - now, 0.0)
        return POLL_SECONDS

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        """Run beside the loop; close() gives what still runs its grace, then cancels it."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, lane: _Lane, job: Job) -> None:
        destination = lane.destination
        try:
            attempted_at = utc_now()
            started = time.time()
            clock = time.perf_counter()
            result = await self._send(destination, job)
            seconds = time.perf_counter() - clock
            record = judge(destination, lane.breaker, job, result, started, attempted_at, seconds)
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
                lane.stalled_until = time.time() + POLL_SECONDS
            await self._save_pause(lane)
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
