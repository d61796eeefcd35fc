"""``purge``: retention. Delete old rows, or drop their raw bodies and keep the typed columns.

Safe while the server runs: see storage/retention.py.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from datetime import UTC, datetime, timedelta

from commands.progress import on_terminal, progress
from plumbing.settings import Settings
from storage.database import Database
from storage.records import utc_text
from storage.retention import Removed, count_old, purge

NAME = "purge"
HELP = "delete pushes and rejects older than a given age, or only drop their raw bodies (--keep-typed)"

_UNITS = {"d": "days", "h": "hours", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhw])", text.strip())
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age such as 90d, 12h or 4w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", type=parse_age, required=True, help="age such as 90d, 12h or 4w")
    parser.add_argument(
        "--keep-typed", action="store_true", help="keep the rows and their typed columns; drop only raw bodies"
    )


async def _run(database: Database, cutoff: str, keep_typed: bool) -> Removed:
    await database.require_data()
    async with database.retention_chunks() as chunks:
        total = await count_old(chunks, cutoff, keep_typed) if on_terminal() else None
        with progress("purge", total) as shown:
            return await purge(chunks, cutoff, keep_typed, shown.advance)


def run(args: argparse.Namespace, settings: Settings) -> int:
    cutoff = utc_text(datetime.now(UTC) - args.older_than)
    removed = asyncio.run(_run(Database(settings), cutoff, args.keep_typed))
    if args.keep_typed:
        print(
            f"dropped the raw bodies of {removed.bodies} pushes, {removed.versions} differing versions and"
            f" {removed.reject_bodies} rejects received before {cutoff}; typed columns are kept"
        )
    else:
        print(
            f"deleted {removed.pushes} pushes (with {removed.versions} differing versions) and {removed.rejects}"
            f" rejects received before {cutoff}; the newest push and reject are always kept"
        )
    return 0
