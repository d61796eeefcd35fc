"""The outcome of the last restore drill, kept in a small file beside the database for /metrics to read.

A file, not a row in the database: the drill only reads the live database, and a file restored from a
replica must not bring back the drill results of the machine it came from.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Drill:
    finished_at: float
    ok: bool
    # The newest push in the restored replica: Unix time and seq (None: the drill failed before that).
    replica_newest_at: float | None
    replica_newest_seq: int | None
    # How long the oldest push missing from the replica had been stored when the drill began (0: none missing).
    lag_seconds: float | None
    problem: str | None


def state_path(db_path: str) -> Path:
    return Path(f"{db_path}.drill.json")


def record(db_path: str, drill: Drill) -> None:
    """Keep ``drill`` as the last one (and the last successful one, if it was), replacing the file whole."""
    path = state_path(db_path)
    state = _read(path)
    state["last"] = asdict(drill)
    if drill.ok:
        state["last_success"] = asdict(drill)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(state))
    os.replace(partial, path)


def _read(path: Path) -> dict[str, Any]:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def last_success(db_path: str) -> Drill | None:
    found = _read(state_path(db_path)).get("last_success")
    try:
        return Drill(**found) if isinstance(found, dict) else None
    except TypeError:
        return None


def newest_push_age(db_path: str) -> float:
    """Seconds from the newest push that the last successful drill found in the replica until now (NaN: none)."""
    drill = last_success(db_path)
    if drill is None or drill.replica_newest_at is None:
        return math.nan
    return max(0.0, time.time() - drill.replica_newest_at)


def last_success_timestamp(db_path: str) -> float:
    drill = last_success(db_path)
    return drill.finished_at if drill else 0.0
