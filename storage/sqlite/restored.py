"""What a SQLite file restored from a replica needs before a receiver serves it: a feed that skips nothing.

A replica is a little behind the machine it came from, and the pushes of that last stretch were
acknowledged and given ``seq`` numbers that consumers of the feed may already have seen. SQLite gives a
new row the largest ``seq`` + 1, so after a restore the next pushes would get those same numbers again,
and a consumer whose saved cursor is past the restored maximum would never be shown them.

So the numbers jump: the first push stored after the restore gets the restored maximum + ``SEQ_JUMP`` + 1,
and every later one counts on from there. A trigger does it, created here in the restored file (the
writer and the schema stay as they are): after a row is inserted at or below the floor, it moves that
row's ``seq`` above it. Nothing refers to a row in the moment after its INSERT (the writer finds a push's
``seq`` by its ids), so the move is safe; once one row is above the floor the trigger's condition, a
comparison with a constant, is false for every later row. The gap is recorded in ``meta`` under
``feed_gaps`` (a JSON list), one entry per restore.

A restored file is migrated when the receiver starts on it, before its first push: a future migration that
rebuilds ``pushes`` (a new table copied over, which drops its triggers) must create this trigger again
from the last ``feed_gaps`` entry. tests/test_restore.py restores a file of the first schema version and
checks the jump after every migration since.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

# Room for a billion pushes that the lost machine may have numbered after its replica's last copy: more
# than a day and a half at the receiver's measured ceiling, far more than any replica lag that goes
# unnoticed. A 64-bit seq has room for billions of such jumps.
SEQ_JUMP = 1_000_000_000
TRIGGER = "feed_after_restore"
GAPS_KEY = "feed_gaps"


@dataclass(frozen=True)
class FeedGap:
    # The restored maximum: numbers above it, up to next_seq, are never handed out again.
    after_seq: int
    next_seq: int
    restored_at: str
    replica_newest_at: str | None


def jump_after_restore(path: Path, restored_at: str, replica_newest_at: str | None) -> FeedGap:
    """Make the next push stored in the file at ``path`` get a number above any the lost tail used."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        (restored_max,) = conn.execute("SELECT coalesce(max(seq), 0) FROM pushes").fetchone()
        gap = FeedGap(int(restored_max), int(restored_max) + SEQ_JUMP + 1, restored_at, replica_newest_at)
        floor = gap.next_seq - 1
        conn.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
        # The numbers are this program's own integers, not input: written into the trigger as constants.
        conn.execute(
            f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON pushes WHEN NEW.seq <= {floor}"
            f" BEGIN UPDATE pushes SET seq = {gap.next_seq} WHERE seq = NEW.seq; END"
        )
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (GAPS_KEY,)).fetchone()
        gaps = [*(json.loads(row[0]) if row else []), asdict(gap)]
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (GAPS_KEY, json.dumps(gaps)))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return gap
