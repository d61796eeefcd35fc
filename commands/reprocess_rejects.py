"""``reprocess-rejects``: take in quarantined bodies that are valid now, through the push path's own code.

Each kept body goes through ``handlers.payload`` (decode, to_record) and ``storage.writer.Writer``, the
same idempotent write path as ``POST /push``: a call already stored counts one more delivery, a differing
body becomes a version. The push keeps the time the reject was received. A reject taken in is marked
(``reprocessed_at``, ``reprocessed_seq``) and not tried again; one that is still invalid is left as it was.
The mark is written after the push commits: if the command is stopped between the two, running it again
counts that call's delivery a second time, and loses nothing.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from dataclasses import dataclass, field

import aiosqlite

from commands.database import NoDatabase, existing_database
from exits import fail
from handlers.errors import ApiError
from handlers.payload import decode, to_record
from settings import Settings
from storage.connection import open_writer
from storage.migrations import migrate
from storage.records import PushRecord, utc_now
from storage.writer import Writer

NAME = "reprocess-rejects"
HELP = "take in rejected bodies that are valid now, through the same idempotent write path as POST /push"

CHUNK_ROWS = 256

_PENDING = (
    "SELECT id, received_at, body FROM rejects WHERE id > ? AND reprocessed_at IS NULL AND body IS NOT NULL"
    f" ORDER BY id LIMIT {CHUNK_ROWS}"
)
_MARK = """
UPDATE rejects SET reprocessed_at = ?,
    reprocessed_seq = (SELECT seq FROM pushes WHERE workflow_id = ? AND node_id = ? AND call_id = ?)
WHERE id = ?
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: every reject with a body that has not been taken in yet is tried."""


@dataclass
class Report:
    taken_in: Counter[str] = field(default_factory=Counter)  # by outcome: new, duplicate, new_version
    still_invalid: Counter[str] = field(default_factory=Counter)  # by the error it would get today


async def reprocess(marker: aiosqlite.Connection, writer: Writer) -> Report:
    report = Report()
    after = 0
    while True:
        chunk = list(await marker.execute_fetchall(_PENDING, (after,)))
        if not chunk:
            return report
        after = chunk[-1][0]
        valid: list[tuple[int, PushRecord]] = []
        for reject_id, received_at, body in chunk:
            raw = bytes(body)
            try:
                valid.append((reject_id, to_record(raw, decode(raw), received_at)))
            except ApiError as exc:
                report.still_invalid[exc.code] += 1
        futures = [writer.submit(record, wait=True) for _, record in valid]
        outcomes = await asyncio.gather(*(f for f in futures if f is not None))
        report.taken_in.update(outcome.value for outcome in outcomes)
        now = utc_now()
        await marker.execute("BEGIN IMMEDIATE")
        await marker.executemany(_MARK, [(now, *record.key, reject_id) for reject_id, record in valid])
        await marker.commit()


async def _run(settings: Settings, path: str) -> Report:
    conn = await open_writer(path, settings.synchronous, settings.busy_timeout_ms)
    marker = await open_writer(path, settings.synchronous, settings.busy_timeout_ms)
    try:
        await migrate(conn)
        writer = Writer(conn, queue_max=CHUNK_ROWS, max_batch=settings.max_batch)
        writer.start()
        try:
            return await reprocess(marker, writer)
        finally:
            await writer.close(drain_seconds=settings.ack_timeout)
    finally:
        await marker.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        report = asyncio.run(_run(settings, existing_database(settings)))
    except NoDatabase as exc:
        return fail(str(exc))
    taken = sum(report.taken_in.values())
    detail = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.taken_in.items()))
    print(f"took in {taken} rejected bodies" + (f" ({detail}); marked them reprocessed" if taken else ""))
    invalid = sum(report.still_invalid.values())
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(report.still_invalid.items()))
    print(f"left {invalid} still invalid" + (f" ({reasons})" if invalid else ""))
    return 0
