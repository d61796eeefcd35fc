"""Filling a receiver database with many distinct pushes quickly: one transaction of bulk inserts."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.direct import INSERT_PUSH, connect, push_row
from bench.servers import remove_database
from handlers.payload import decode, to_record
from tests.support import create_schema

CALL_ID, RECEIVED_AT, BODY_HASH, BODY = 2, (14, 15), 17, 18


def _rows(template: str, count: int) -> Iterator[tuple[object, ...]]:
    """The template push with ids 0..count-1, received one second apart up to now."""
    prefix, suffix = template.split("@CALL_ID@")
    first = prefix + "prefill-0" + suffix
    row = list(push_row(to_record(first.encode(), decode(first.encode()), "")))
    start = datetime.now(UTC) - timedelta(seconds=count)
    for number in range(count):
        call_id = f"prefill-{number}"
        body = prefix + call_id + suffix
        received_at = (start + timedelta(seconds=number)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        row[CALL_ID] = call_id
        row[RECEIVED_AT[0]] = row[RECEIVED_AT[1]] = received_at
        row[BODY_HASH] = hashlib.blake2b(body.encode(), digest_size=16).digest()
        row[BODY] = body
        yield tuple(row)


def prefill(db_path: Path, template: str, count: int) -> None:
    """A new file at ``db_path`` with the receiver's schema and ``count`` stored pushes."""
    remove_database(db_path)
    asyncio.run(create_schema(str(db_path), "OFF"))
    conn = connect(str(db_path), "OFF")
    try:
        with conn:
            conn.executemany(INSERT_PUSH, _rows(template, count))
    finally:
        conn.close()
    # Written with synchronous = OFF, the file is still gigabytes of dirty pages: flush them now, or the
    # receiver's first fsync waits for all of them and the run measures the pre-fill instead.
    with db_path.open("rb+") as file:
        os.fsync(file.fileno())
