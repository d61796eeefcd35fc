"""Fans each committed batch of pushes out to the open /api/events streams, as ready-made SSE frames."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson

from storage.records import Outcome, Record, push_summaries

# A client this many batches behind is cut off; it reconnects and catches up through /api/pushes.
MAX_BACKLOG = 500

END = b""  # put on a stream's queue to end it


class EventHub:
    """Fans each committed batch out to the open event streams."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[bytes]] = set()
        self._closed = False

    @property
    def listeners(self) -> int:
        return len(self._queues)

    def subscribe(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        if self._closed:
            queue.put_nowait(END)  # opened during shutdown: ends at once instead of holding the exit up
        else:
            self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes]) -> None:
        self._queues.discard(queue)

    def on_commit(self, records: Sequence[Record], outcomes: Sequence[Outcome], seconds: float) -> None:
        """Writer listener; costs nothing while no one watches."""
        if not self._queues:
            return
        pushes = push_summaries(records, outcomes)
        if pushes:
            self.on_pushes(orjson.dumps(pushes))

    def on_pushes(self, summaries: bytes) -> None:
        """A JSON list of ``push_summaries``, as the writer or (on PostgreSQL) another receiver's commit made it."""
        if self._queues:
            self._broadcast(b"event: pushes\ndata: " + summaries + b"\n\n")

    def _broadcast(self, frame: bytes) -> None:
        for queue in list(self._queues):
            if queue.qsize() >= MAX_BACKLOG:
                self._end(queue)
            else:
                queue.put_nowait(frame)

    def _end(self, queue: asyncio.Queue[bytes]) -> None:
        self._queues.discard(queue)
        queue.put_nowait(END)

    def close(self) -> None:
        """End every stream, and any opened later, so that shutdown does not wait for idle clients."""
        self._closed = True
        for queue in list(self._queues):
            self._end(queue)
