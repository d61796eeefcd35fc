"""``forward status|replay|retry-dead``: see the forwarding outbox and put deliveries back in line.

Safe while the server runs: a replay only marks jobs pending and due now, in short write transactions;
the running dispatcher picks them up within a second (forwarding/dispatcher.py, POLL_SECONDS). A replay
sends the same webhook-id as before, so a receiver that already took a delivery can drop the repeat.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson

from commands.progress import on_terminal, progress
from plumbing.exits import CommandFailed
from plumbing.settings import Settings
from storage import outbox
from storage.database import Database
from storage.filters import parse_time

NAME = "forward"
HELP = "forwarding: counts by destination (status), send deliveries again (replay), retry the dead ones (retry-dead)"

CHUNK = 500


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    status = actions.add_parser("status", help="pending, delivered and dead deliveries by destination")
    status.add_argument("--json", action="store_true", help="print JSON")
    replay = actions.add_parser("replay", help="send chosen deliveries again, from the first attempt of the schedule")
    chosen = replay.add_argument_group("which deliveries (at least one)")
    chosen.add_argument("--call-id", help="the deliveries of this call")
    chosen.add_argument("--since", help="deliveries of pushes received at or after this time (ISO 8601)")
    chosen.add_argument("--until", help="deliveries of pushes received before this time (ISO 8601)")
    chosen.add_argument("--dead", action="store_true", help="only dead deliveries")
    replay.add_argument("--destination", help="only this destination")
    retry = actions.add_parser("retry-dead", help="send every dead delivery again (the same as replay --dead)")
    retry.add_argument("--destination", help="only this destination")
    for action in (status, replay, retry):
        # Also after the action (forward status --db FILE); SUPPRESS leaves the value given before it alone.
        action.add_argument("--config", default=argparse.SUPPRESS, help="TOML file (default: ./config.toml)")
        action.add_argument(
            "--db", dest="db_path", default=argparse.SUPPRESS, help="SQLite file, or a postgresql:// URL"
        )


def selection(args: argparse.Namespace) -> outbox.Selection:
    if args.action == "retry-dead":
        return outbox.Selection(dead=True, destination=args.destination)
    if not (args.call_id or args.since or args.until or args.dead):
        raise CommandFailed("replay needs --call-id, --since/--until or --dead (retry-dead replays every dead one)")
    return outbox.Selection(
        call_id=args.call_id,
        since=parse_time("since", args.since) if args.since else None,
        until=parse_time("until", args.until) if args.until else None,
        dead=args.dead,
        destination=args.destination,
    )


async def _count(database: Database, chosen: outbox.Selection) -> int:
    conn = await database.open_reader()
    try:
        return await outbox.count_selected(conn, chosen)
    finally:
        await conn.close()


async def replay(database: Database, chosen: outbox.Selection) -> int:
    # It may bring the schema up to date, but must not make a receiver database of another program's file.
    await database.require_data()
    total = await _count(database, chosen) if on_terminal() else None
    async with database.replays() as replays:
        done, after = 0, 0
        with progress("replay", total, unit="deliveries") as shown:
            while True:
                count, after = await replays.replay_chunk(chosen, after, CHUNK)
                if not count:
                    break
                done += count
                shown.advance(count)
        return done


async def status(database: Database) -> list[dict[str, Any]]:
    conn = await database.open_reader()
    try:
        return await outbox.summary(conn)
    finally:
        await conn.close()


def render(table: list[dict[str, Any]], settings: Settings, now: datetime) -> str:
    configured = {d.name for d in settings.forward}
    names = sorted(configured | {row["destination"] for row in table})
    rows = {row["destination"]: row for row in table}
    lines = [f"{'destination':<24}{'pending':>9}{'delivered':>11}{'dead':>7}  oldest pending"]
    for name in names:
        row = rows.get(name, {})
        oldest = row.get("oldest_pending_at")
        age = f"{(now - datetime.fromisoformat(oldest.replace('Z', '+00:00'))).total_seconds():.0f}s" if oldest else "-"
        note = "" if name in configured else "  (no longer configured)"
        lines.append(
            f"{name:<24}{row.get('pending', 0):>9}{row.get('delivered', 0):>11}{row.get('dead', 0):>7}  {age}{note}"
        )
        if row.get("last_error"):
            lines.append(f"  last error: {row['last_error']}")
    if not names:
        lines.append("(no [[forward]] destinations are configured and nothing was forwarded)")
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    database = Database(settings)
    database.require_file()
    if args.action == "status":
        table = asyncio.run(status(database))
        shown = orjson.dumps(table, option=orjson.OPT_INDENT_2).decode() if args.json else None
        print(shown or render(table, settings, datetime.now(UTC)))
        return 0
    done = asyncio.run(replay(database, selection(args)))
    print(f"put {done} deliveries back in line; a running server sends them within a second")
    return 0
