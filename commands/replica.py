"""Litestream's replica of the database, for ``restore`` and ``drill``: its generations, and the one to use.

Litestream starts a new generation whenever it finds a file it has not seen: after a restore, and also on
a new machine whose services started before the restore, where the newest generation is an empty file.
Litestream's own restore picks the newest generation, so every generation is restored here and the one
whose newest push is the newest wins; a generation without pushes never does.
"""

from __future__ import annotations

import argparse
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from plumbing.exits import CommandFailed

# Where deploy/install-litestream.sh and deploy/ put them.
LITESTREAM = "/usr/local/bin/litestream"
LITESTREAM_CONFIG = "/etc/airudder-receiver/litestream.yml"
# A restore of a large replica downloads and replays it all.
LITESTREAM_SECONDS = 3600
# How far behind the live database a replica may be, by default, before a copy of it is refused.
MAX_LAG = 60.0


@dataclass(frozen=True)
class Generation:
    replica: str
    name: str
    # When Litestream last wrote to it (its "end" column), UTC.
    end: datetime


@dataclass(frozen=True)
class Contents:
    pushes: int
    rejects: int
    newest_seq: int | None
    # first_received_at of the newest push: seq follows commit order, so it is the last new call stored.
    newest_at: str | None


@dataclass(frozen=True)
class Restored:
    path: Path
    generation: Generation
    contents: Contents
    # Every generation found, with what each held, the chosen one included.
    candidates: list[tuple[Generation, Contents]]


def add_litestream_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--litestream-config", default=LITESTREAM_CONFIG, metavar="PATH",
        help=f"Litestream's settings, naming the database and its replicas (default: {LITESTREAM_CONFIG})",
    )  # fmt: skip
    parser.add_argument("--litestream", default=LITESTREAM, metavar="PATH", help=f"the binary (default: {LITESTREAM})")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def add_max_lag_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-lag", type=_seconds, default=MAX_LAG, metavar="SECONDS",
        help=f"fail when the replica misses a push stored longer ago than this (default: {MAX_LAG:.0f})",
    )  # fmt: skip


def _litestream(args: argparse.Namespace, *command: str) -> str:
    try:
        done = subprocess.run(
            [args.litestream, *command], capture_output=True, text=True, timeout=LITESTREAM_SECONDS, check=False
        )
    except FileNotFoundError:
        raise CommandFailed(f"there is no Litestream at {args.litestream} (deploy/install-litestream.sh)") from None
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise CommandFailed(f"litestream {command[0]} failed: {said[-1] if said else f'exit {done.returncode}'}")
    return done.stdout


def generations(args: argparse.Namespace, db: Path) -> list[Generation]:
    """Every generation of every replica that Litestream's settings give for ``db``."""
    # Litestream 0.3 reads the database file's time for its lag column and fails when there is no file, as
    # on a new machine: an empty one stands in while it lists, and is gone again before anything else runs.
    stand_in = not db.exists()
    if stand_in:
        db.touch(mode=0o600, exist_ok=False)
    try:
        out = _litestream(args, "generations", "-config", args.litestream_config, str(db))
    finally:
        if stand_in:
            db.unlink(missing_ok=True)
    lines = out.splitlines()
    if not lines or lines[0].split() != ["name", "generation", "lag", "start", "end"]:
        raise CommandFailed(f"litestream generations said something this program cannot read: {out[:200]!r}")
    found = []
    for line in lines[1:]:
        replica, name, _lag, _start, end = line.split()
        found.append(Generation(replica, name, datetime.fromisoformat(end.replace("Z", "+00:00"))))
    return found


def contents(path: Path) -> Contents:
    """What a restored file holds; a file without the receiver's tables holds no pushes."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'pushes'").fetchone():
            return Contents(0, 0, None, None)
        (pushes,) = conn.execute("SELECT count(*) FROM pushes").fetchone()
        (rejects,) = conn.execute("SELECT count(*) FROM rejects").fetchone()
        newest = conn.execute("SELECT seq, first_received_at FROM pushes ORDER BY seq DESC LIMIT 1").fetchone()
    except sqlite3.DatabaseError as exc:
        # Named here: the live database is not the file that failed.
        raise CommandFailed(f"the restored copy {path} cannot be read: {exc}") from None
    finally:
        conn.close()
    return Contents(int(pushes), int(rejects), *(newest if newest else (None, None)))


def first_push_after(path: Path, seq: int) -> str | None:
    """When the live database at ``path`` stored its first push numbered above ``seq`` (None: there is none)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT first_received_at FROM pushes WHERE seq > ? ORDER BY seq LIMIT 1", (seq,)).fetchone()
    finally:
        conn.close()
    return str(row[0]) if row else None


def lag_seconds(live: Path, restored: Contents, started: float) -> float:
    """How long the oldest push that the restored copy misses had been in the live database at ``started``
    (Unix time; 0: it misses none). The pushes stored since ``started`` do not count: the copy began then."""
    missing_since = first_push_after(live, restored.newest_seq or 0)
    return max(0.0, started - epoch(missing_since)) if missing_since else 0.0


def epoch(stored: str) -> float:
    """A stored UTC time (2026-12-05T08:59:07.123Z) as Unix time."""
    return datetime.fromisoformat(stored.replace("Z", "+00:00")).timestamp()


def _newer(a: tuple[Generation, Contents], b: tuple[Generation, Contents]) -> bool:
    """Whether candidate ``a`` holds more recent data than ``b``: the newer newest push, then the larger seq."""
    key_a = (a[1].newest_at or "", a[1].newest_seq or 0, a[0].end)
    key_b = (b[1].newest_at or "", b[1].newest_seq or 0, b[0].end)
    return key_a > key_b


def integrity_problems(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:  # a file damaged beyond what the check can walk
        problems = [str(exc)]
    finally:
        conn.close()
    return [] if problems == ["ok"] else problems


def restore_best(args: argparse.Namespace, db: Path, folder: Path, only: str | None = None) -> Restored:
    """Restore each generation (or the one named ``only``) into ``folder``; keep the newest data, checked.

    The files of the generations not chosen are deleted; the chosen one is the caller's to move or delete.
    """
    found = [g for g in generations(args, db) if only is None or g.name == only]
    if not found:
        raise CommandFailed(
            f"the replica holds no generation {only}" if only else f"the replicas in {args.litestream_config} are empty"
        )
    candidates: list[tuple[Generation, Contents]] = []
    best: tuple[Generation, Contents] | None = None
    files: dict[str, Path] = {}
    try:
        for generation in found:
            out = folder / f"{db.name}.{generation.replica}.{generation.name}"
            files[f"{generation.replica}/{generation.name}"] = out
            _litestream(
                args, "restore", "-config", args.litestream_config, "-replica", generation.replica,
                "-generation", generation.name, "-o", str(out), str(db),
            )  # fmt: skip
            candidate = (generation, contents(out))
            candidates.append(candidate)
            if candidate[1].pushes and (best is None or _newer(candidate, best)):
                best = candidate
        if best is None:
            raise CommandFailed(f"no generation in the replicas of {args.litestream_config} holds a push")
        chosen = files.pop(f"{best[0].replica}/{best[0].name}")
        problems = integrity_problems(chosen)
        if problems:
            files["chosen"] = chosen
            raise CommandFailed(f"generation {best[0].name} failed its integrity check: {'; '.join(problems[:3])}")
    finally:
        for path in files.values():
            for leftover in (path, *(path.with_name(path.name + end) for end in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)
    return Restored(chosen, best[0], best[1], candidates)
