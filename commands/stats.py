"""``stats``: the figures of GET /api/stats, read from the file (the server need not run)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson

from plumbing.settings import Settings
from storage.database import Database

NAME = "stats"
HELP = "print totals, duplicates, rejects and counts by workflow, node and intention"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the JSON document of GET /api/stats, with the database it read"
    )


async def _stats(database: Database) -> dict[str, Any]:
    conn = await database.open_reader()
    try:
        return {"database": database.name, **await database.stats(conn)}
    finally:
        await conn.close()


def render(stats: dict[str, Any]) -> str:
    lines = [
        f"database    {stats['database']} (schema version {stats['schema_version']})",
        f"pushes      {stats['pushes']} ({stats['deliveries']} deliveries, {stats['duplicates']} duplicates,"
        f" {stats['versions']} differing versions)",
        f"received    {stats['first_push_at'] or '-'} .. {stats['last_push_at'] or '-'}",
        f"rejects     {stats['rejects']}"
        + "".join(f"\n  {reason:<24}{count}" for reason, count in stats["rejects_by_reason"].items()),
        "by workflow",
        *(
            f"  {row['pushes']:>8}  {row['workflow_name'] or '-'} ({row['workflow_id']})"
            for row in stats["by_workflow"]
        ),
        "by node",
        *(f"  {row['pushes']:>8}  {row['node_name'] or '-'} ({row['node_id']})" for row in stats["by_node"]),
        "by intention",
        *(f"  {row['pushes']:>8}  {row['intention'] or '-'}" for row in stats["by_intention"]),
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    stats = asyncio.run(_stats(Database(settings)))
    print(orjson.dumps(stats, option=orjson.OPT_INDENT_2).decode() if args.json else render(stats))
    return 0
