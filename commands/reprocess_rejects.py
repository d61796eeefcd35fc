"""``reprocess-rejects``: take in quarantined bodies that are valid now, through the push path's own code.

Each kept body goes through ``handlers.payload`` (decode, to_record) and ``storage.writer.Writer``, the
same idempotent write path as ``POST /push``: a call already stored counts one more delivery, a differing
body becomes a version. The push keeps the time the reject was received. The writer marks the reject
(``reprocessed_at``, ``reprocessed_seq``) in the same commit as its push, so a reject is taken in once,
even if the command is stopped half way; one that is still invalid is left as it was.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from commands.progress import on_terminal, progress
from handlers.payload import InvalidPush, decode, to_record
from plumbing.settings import DRAIN_SECONDS, Settings
from storage import queries
from storage.database import Database
from storage.records import Outcome, ReprocessedReject
from storage.sql import Reader
from storage.writer import Writer

NAME = "reprocess-rejects"
HELP = "take in rejected bodies that are valid now, through the same idempotent write path as POST /push"

CHUNK_ROWS = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options: every reject with a body that has not been taken in yet is tried."""


@dataclass
class Report:
    taken_in: Counter[str] = field(default_factory=Counter)  # by outcome: new, duplicate, new_version
    still_invalid: Counter[str] = field(default_factory=Counter)  # by the error it would get today


async def reprocess(reader: Reader, writer: Writer, advance: Callable[[int], None]) -> Report:
    report = Report()
    after = 0
    while chunk := await queries.pending_rejects(reader, after, CHUNK_ROWS):
        after = chunk[-1][0]
        records: list[ReprocessedReject] = []
        for reject_id, received_at, body in chunk:
            try:
                records.append(ReprocessedReject(reject_id, to_record(body, decode(body), received_at)))
            except InvalidPush as exc:
                report.still_invalid[exc.code] += 1
        futures = [writer.submit(record, wait=True) for record in records]
        # Every answer is collected before one failure is raised, so that none is left unread.
        answers = await asyncio.gather(*(f for f in futures if f is not None), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
        report.taken_in.update(answer.value for answer in answers if isinstance(answer, Outcome))
        advance(len(chunk))
    return report


async def _run(database: Database) -> Report:
    # The reader first: it refuses a file that holds no receiver data before the writer migrates anything.
    reader = await database.open_reader()
    try:
        await database.open_writer()
        total = await queries.count_pending_rejects(reader) if on_terminal() else None
        with progress("reprocess-rejects", total) as shown:
            return await reprocess(reader, database.writer, shown.advance)
    finally:
        # The write connection closes last: only then does SQLite checkpoint the WAL into the file.
        await reader.close()
        await database.close(drain_seconds=DRAIN_SECONDS)


def run(args: argparse.Namespace, settings: Settings) -> int:
    report = asyncio.run(_run(Database(settings)))
    taken = sum(report.taken_in.values())
    detail = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.taken_in.items()))
    print(f"took in {taken} rejected bodies" + (f" ({detail}); marked them reprocessed" if taken else ""))
    invalid = sum(report.still_invalid.values())
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(report.still_invalid.items()))
    print(f"left {invalid} still invalid" + (f" ({reasons})" if invalid else ""))
    return 0
