"""The single writer: answers every queued item, in batches, through one database's ``Batches``.

Handlers call ``submit``; the writer task takes everything waiting (up to ``max_batch``), hands it to the
backend's ``Batches.write`` (one transaction, storage/sqlite/batches.py or storage/postgres/batches.py) and
only then resolves each item's future. The writer holds the queue, the waiting requests and the drain; it
knows no SQL.

A failed batch is answered as failed and the writer goes on; the backend's ``recover`` makes sure the next
batch has a working connection. If the writer task ever ends without being closed, everything still queued
is failed at once rather than left to time out.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from storage.records import Outcome, PushRecord, Record

log = logging.getLogger("airudder_receiver.writer")


# Why the writer did not take an item: its queue is full, or it is not running.
UNAVAILABLE_CAUSES = ("queue_full", "writer_unavailable")


class WriterUnavailable(Exception):
    """The item was not taken: the queue is full or the writer is not running."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause  # one of UNAVAILABLE_CAUSES


class WriteFailed(Exception):
    """The batch holding the item was rolled back; nothing of it is stored."""


class CommitTimeout(Exception):
    """The item's batch did not commit in time; it may still commit, and a retry then counts as a duplicate."""


# What ``Writer.store`` raises when a record is not stored in time.
STORE_ERRORS = (WriterUnavailable, WriteFailed, CommitTimeout)


@dataclass(slots=True)
class _Item:
    record: Record
    future: asyncio.Future[Outcome] | None
    size: int


_STOP = object()

# Called after each commit with the batch's records, their outcomes and the seconds the write took.
CommitListener = Callable[[Sequence[Record], Sequence[Outcome], float], None]


class Batches(Protocol):
    """The one step that differs per database: write a batch in one transaction, after a failure make
    sure the next batch has a working connection, and close."""

    async def write(self, records: Sequence[Record]) -> list[Outcome]: ...

    async def recover(self) -> None: ...

    async def close(self) -> None: ...


@dataclass
class WriterStats:
    batches: int = 0
    last_commit_seconds: float = 0.0
    last_error: str | None = None


class Writer:
    def __init__(
        self,
        batches: Batches,
        *,
        queue_max: int,
        max_batch: int,
        queue_max_bytes: float = math.inf,
    ) -> None:
        self._batches = batches
        self._queue_max = queue_max
        self._queue_max_bytes = queue_max_bytes
        self._queued_bytes = 0
        self._queued_records = 0
        self._max_batch = max_batch
        # Unbounded underneath: the limit is enforced in submit(), so the stop marker always fits. A plain deque
        # and one future to wake the writer cost a push less than asyncio.Queue's bookkeeping.
        self._queue: collections.deque[object] = collections.deque()
        self._arrival: asyncio.Future[None] | None = None  # set while the writer waits for an item
        self._accepting = True
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[CommitListener] = []
        self.stats = WriterStats()

    # -- what handlers and health checks see ---------------------------------------------------

    @property
    def depth(self) -> int:
        """Records waiting to be written."""
        return self._queued_records

    @property
    def running(self) -> bool:
        return self._accepting and self._task is not None and not self._task.done()

    @property
    def full(self) -> bool:
        return self._queued_records >= self._queue_max or self._queued_bytes >= self._queue_max_bytes

    def submit(self, record: Record, *, wait: bool, size: int = 0) -> asyncio.Future[Outcome] | None:
        """Queue a record of ``size`` bytes. With ``wait``, the future resolves once its batch is committed."""
        if not self.running:
            raise WriterUnavailable("writer_unavailable")
        if self.full or self._queued_bytes + size > self._queue_max_bytes:
            raise WriterUnavailable("queue_full")
        future = asyncio.get_running_loop().create_future() if wait else None
        self._put(_Item(record, future, size))
        self._queued_bytes += size
        self._queued_records += 1
        return future

    async def store(self, record: Record, *, wait: bool, size: int, commit_within: float) -> Outcome | None:
        """``submit``, then with ``wait`` the outcome once committed; None means queued, not yet stored.

        Raises WriterUnavailable, WriteFailed or CommitTimeout when the record is not stored in time.
        """
        # Queued mode answers at once while the writer keeps up. Once a whole batch waits behind the one
        # being written, a new push waits for its commit instead: a writer that falls behind then slows the
        # senders down to its own pace rather than filling the queue and refusing them with queue_full.
        wait = wait or self._queued_records >= self._max_batch
        future = self.submit(record, wait=wait, size=size)
        if future is None:
            return None
        # A timed-out wait fails only this future; the writer skips answering it but still writes the item,
        # which may commit: the sender's retry then arrives as a duplicate and is answered 200. A timer on
        # the future costs less per push than a timeout context around the wait.
        expiry = asyncio.get_running_loop().call_later(commit_within, _expire, future, commit_within)
        try:
            return await future
        finally:
            expiry.cancel()

    def add_listener(self, listener: CommitListener) -> None:
        """Run ``listener`` after every commit, once the waiting requests have their answers."""
        self._listeners.append(listener)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="airudder-receiver-writer")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not self._accepting:
            return  # close() stopped it
        reason = "it was cancelled" if task.cancelled() else repr(task.exception())
        log.error("the writer stopped unexpectedly (%s); pushes are refused until a restart", reason)
        self._fail_leftovers()

    async def close(self, drain_seconds: float) -> bool:
        """Stop taking items, write everything already queued, then close the connection.

        Returns whether everything queued was written; if not, the rest was failed. A writer waiting for
        another process's lock is cancelled between two short lock attempts, so closing takes at most
        ``drain_seconds`` plus one lock attempt (storage/sqlite/connection.py, LOCK_ATTEMPT_MS).
        """
        self._accepting = False
        self._put(_STOP)
        drained = True
        # asyncio.wait, not wait_for: a writer task that already died must not make close() raise.
        if self._task is not None and not (await asyncio.wait({self._task}, timeout=drain_seconds))[0]:
            log.error("writer did not drain within %.1fs; %d items left unwritten", drain_seconds, self.depth)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            drained = False
        if self.depth:
            drained = False
        self._fail_leftovers()
        await self._batches.close()
        return drained

    def _fail_leftovers(self) -> None:
        leftovers = []
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, _Item):
                leftovers.append(item)
        self._taken(leftovers)
        self._fail(leftovers, WriterUnavailable("writer_unavailable"))

    # -- the writer task ------------------------------------------------------------------------

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            if not self._queue:
                self._arrival = asyncio.get_running_loop().create_future()
                await self._arrival
                continue
            first = self._queue.popleft()
            if first is _STOP:
                return
            batch: list[_Item] = [first]  # type: ignore[list-item]
            while len(batch) < self._max_batch and self._queue:
                item = self._queue.popleft()
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._taken(batch)
            await self._write_batch(batch)

    def _put(self, item: object) -> None:
        self._queue.append(item)
        arrival, self._arrival = self._arrival, None
        if arrival is not None and not arrival.done():
            arrival.set_result(None)

    def _taken(self, items: Sequence[_Item]) -> None:
        """Items leave the count of what is queued when the writer takes them (or fails them)."""
        self._queued_records -= len(items)
        self._queued_bytes -= sum(item.size for item in items)

    async def _write_batch(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        records = [item.record for item in batch]
        try:
            outcomes = await self._batches.write(records)
        except asyncio.CancelledError:
            # Cancelled mid-write (only when a drain overruns): none of these may be acknowledged. The batch
            # may still commit on the connection's thread; a sender's retry then counts as a duplicate.
            self._fail(batch, WriteFailed("the writer was stopped before the batch's commit was confirmed"))
            raise
        except Exception as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.error("batch of %d failed and was rolled back: %s", len(batch), self.stats.last_error)
            self._fail(batch, WriteFailed(self.stats.last_error))
            await self._batches.recover()
            return
        self.stats.batches += 1
        self.stats.last_commit_seconds = time.perf_counter() - started
        self.stats.last_error = None
        for item, outcome in zip(batch, outcomes, strict=True):
            if item.future is not None and not item.future.done():
                item.future.set_result(outcome)
        for listener in self._listeners:
            try:
                listener(records, outcomes, self.stats.last_commit_seconds)
            except Exception:  # a broken observer must not stop the writer
                log.exception("commit listener %r failed", listener)

    @staticmethod
    def _fail(batch: Sequence[_Item], exc: Exception) -> None:
        for item in batch:
            if item.future is not None and not item.future.done():
                item.future.set_exception(exc)
            elif item.future is None and isinstance(item.record, PushRecord):
                log.error("queued push %s was acknowledged but not stored", "/".join(item.record.key))


def _expire(future: asyncio.Future[Outcome], seconds: float) -> None:
    if not future.done():
        future.set_exception(CommitTimeout(f"the push was not stored within {seconds:g}s"))
