"""``export``: stream pushes to a file or stdout as JSON lines (full bodies) or CSV (typed columns)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from typing import IO, Any

import orjson

from commands.progress import on_terminal, progress
from plumbing.settings import Settings
from storage.database import Database
from storage.filters import EXACT_FILTERS, TIME_FILTERS, parse_push_filter
from storage.queries import PUSH_COLUMNS, count_pushes, iter_pushes

NAME = "export"
HELP = "write pushes as JSON lines (full bodies) or CSV (typed columns), streaming"

# Rows fetched per hop to the reading thread: large enough to be fast, small enough to stay flat.
CHUNK_ROWS = 500

# OWASP's rule against CSV injection: a spreadsheet takes a cell that starts with one of these for a formula,
# and anyone who can push (or guess the push path) chooses the text of most columns.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="output format")
    parser.add_argument("--output", help="file to write (default: stdout)")
    parser.add_argument("--after", help="only pushes with a seq greater than this")
    for name in EXACT_FILTERS:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"only pushes with this {name}")
    parser.add_argument("--since", help="received at or after this ISO 8601 time (UTC unless an offset is given)")
    parser.add_argument("--until", help="received before this ISO 8601 time")
    parser.add_argument(
        "--raw-cells",
        action="store_true",
        help="CSV: write cells as stored, without the quote put before one that a spreadsheet would run",
    )


def filter_params(args: argparse.Namespace) -> dict[str, str]:
    names = (*EXACT_FILTERS, *TIME_FILTERS, "after")
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


async def _export(database: Database, args: argparse.Namespace) -> int:
    push_filter = parse_push_filter(filter_params(args))
    conn = await database.open_reader(chunk_rows=CHUNK_ROWS)
    try:
        total = await count_pushes(conn, push_filter) if on_terminal() else None
        # Opened once the database is known to be readable, so that a refused run leaves no empty file.
        with _output(args.output) as out, progress("export", total) as shown:
            as_csv = args.format == "csv"
            writer: Any = csv.writer(out) if as_csv else None
            if as_csv:
                writer.writerow(PUSH_COLUMNS)
            # aclosing: if writing fails (a closed pipe), the query is finished before the connection closes.
            async with aclosing(iter_pushes(conn, push_filter, with_body=not as_csv)) as items:
                async for item in items:
                    if as_csv:
                        warnings = item["warnings"]
                        item["warnings"] = orjson.dumps(warnings).decode() if warnings is not None else None
                        writer.writerow(item.values() if args.raw_cells else map(inert, item.values()))
                    else:
                        out.write(orjson.dumps(item).decode())
                        out.write("\n")
                    shown.advance(1)
    finally:
        await conn.close()
    return shown.done


def inert(value: object) -> object:
    """A text cell a spreadsheet would run as a formula, with a single quote before it (shown as text)."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


@contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8", newline="") as out:
        yield out


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        count = asyncio.run(_export(Database(settings), args))
    except BrokenPipeError:
        # The reader stopped early (``export | head``): not an error, and nothing more to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    print(f"exported {count} pushes", file=sys.stderr)
    return 0
