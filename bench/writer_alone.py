"""The receiver's writer alone, no HTTP: how many pushes per second its group commit stores.

Tasks, as many as wrk has connections, each store one push after another through ``Writer.store`` and wait
for its commit, as the committed-mode handler does; the records are built before the clock starts, so
what is measured is the queue, the batches and SQLite, with the receiver's own settings and schema.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from bench.servers import remove_database
from handlers.payload import decode, to_record
from plumbing.settings import Settings
from storage.database import Database
from storage.records import PushRecord, utc_now


@dataclass(frozen=True)
class WriterRun:
    rows: int
    seconds: float
    cpu_seconds: float  # this process, all threads (the event loop and SQLite's thread)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds

    @property
    def cpu_us_per_row(self) -> float:
        return self.cpu_seconds / max(1, self.rows) * 1e6


async def _store_for(db_path: Path, base: PushRecord, seconds: float, in_flight: int) -> WriterRun:
    database = Database(Settings(db_path=str(db_path), synchronous="FULL"))
    await database.open_writer()
    writer = database.writer
    numbers = itertools.count()
    size = len(base.body.encode())
    deadline = time.monotonic() + seconds

    async def sender() -> int:
        stored = 0
        while time.monotonic() < deadline:
            record = dataclasses.replace(base, call_id=f"writer-{next(numbers)}")
            await writer.store(record, wait=True, size=size, commit_within=9)
            stored += 1
        return stored

    cpu_started, started = time.process_time(), time.perf_counter()
    stored = sum(await asyncio.gather(*(sender() for _ in range(in_flight))))
    run = WriterRun(stored, time.perf_counter() - started, time.process_time() - cpu_started)
    await database.close(drain_seconds=5)
    return run


def writer_alone(workdir: Path, template: Path, seconds: float, in_flight: int) -> WriterRun:
    """Store the template push under fresh call ids for ``seconds`` on a new file, ``in_flight`` at a time."""
    body = template.read_bytes().replace(b"@CALL_ID@", b"writer-template")
    base = to_record(body, decode(body), utc_now())
    db_path = workdir / "writer-alone.sqlite3"
    remove_database(db_path)
    try:
        return asyncio.run(_store_for(db_path, base, seconds, in_flight))
    finally:
        remove_database(db_path)
