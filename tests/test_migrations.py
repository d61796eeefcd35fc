"""Migrations: ordered steps recorded in user_version, each applied once, a failed one rolled back."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from storage.schema import Migration, SchemaTooNew
from storage.sqlite.connection import NotWal, open_writer
from storage.sqlite.schema import MIGRATIONS, migrate, schema_version
from tests.process import run_server_to_exit
from tests.support import migrated, rows, sqlite_file


async def test_migrations_apply_once(db_path: Path) -> None:
    conn = await open_writer(str(db_path), "FULL", 1000)
    try:
        assert await migrate(conn, 1.0) == [m.name for m in MIGRATIONS]
        assert await migrate(conn, 1.0) == []
        assert await schema_version(conn) == len(MIGRATIONS)
    finally:
        await conn.close()
    tables = {r[0] for r in rows(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"pushes", "push_versions", "rejects", "meta"} <= tables
    assert rows(db_path, "PRAGMA journal_mode")[0][0] == "wal"


async def test_failed_migration_step_rolls_back(db_path: Path) -> None:
    broken = Migration("0002_broken", ("CREATE TABLE half_done (x INTEGER)", "CREATE TABLE oops (syntax error"))
    conn = await open_writer(str(db_path), "FULL", 1000)
    try:
        with pytest.raises(sqlite3.OperationalError):
            await migrate(conn, 1.0, (*MIGRATIONS, broken))
        assert await schema_version(conn) == len(MIGRATIONS)
    finally:
        await conn.close()
    assert rows(db_path, "SELECT name FROM sqlite_master WHERE name = 'half_done'") == []


async def test_newer_schema_is_refused(db_path: Path) -> None:
    with sqlite_file(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn2 = await open_writer(str(db_path), "FULL", 1000)
    try:
        with pytest.raises(SchemaTooNew, match="newer than this program knows"):
            await migrate(conn2, 1.0)
    finally:
        await conn2.close()


async def test_two_writers_migrating_at_once_apply_each_step_once(db_path: Path) -> None:
    first = await open_writer(str(db_path), "FULL", 5000)
    second = await open_writer(str(db_path), "FULL", 5000)
    try:
        applied = await asyncio.gather(migrate(first, 1.0), migrate(second, 1.0))
    finally:
        await first.close()
        await second.close()
    assert sorted(applied[0] + applied[1]) == sorted(m.name for m in MIGRATIONS)
    assert rows(db_path, "PRAGMA user_version")[0][0] == len(MIGRATIONS)


async def test_a_database_without_wal_is_refused_at_open() -> None:
    opened: list[aiosqlite.Connection] = []
    try:
        with pytest.raises(NotWal, match="must support WAL"):
            opened.append(await open_writer(":memory:", "FULL", 1000))
    finally:  # an open connection's thread would keep the test run from exiting
        for conn in opened:
            await conn.close()


@pytest.mark.parametrize("command", [["purge", "--older-than", "90d"], ["reprocess-rejects"]])
@pytest.mark.parametrize("problem", ["schema too new", "locked"])
def test_commands_that_write_fail_in_one_sentence(tmp_path: Path, command: list[str], problem: str) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    if problem == "schema too new":
        with sqlite_file(db_path) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA user_version = 99")
    else:
        migrated(db_path)
    config = tmp_path / "config.toml"
    config.write_text("busy_timeout_ms = 300\n")
    # Another process holds the write lock until the command has answered.
    holder = None
    if problem == "locked":
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
    try:
        # A command that hangs on exit is caught by the subprocess timeout.
        done = run_server_to_exit(tmp_path, *command, "--config", str(config), "--db", str(db_path))
    finally:
        if holder is not None:
            holder.close()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("airudder-receiver: "), done.stderr
    assert ("newer than this program knows" if problem == "schema too new" else "locked") in lines[0]


@pytest.mark.parametrize("name", ["workflow_name", "node_name"])
async def test_name_filters_use_an_index(db_path: Path, name: str) -> None:
    conn = await open_writer(str(db_path), "FULL", 1000)
    try:
        await migrate(conn, 1.0)
    finally:
        await conn.close()
    sql = f"EXPLAIN QUERY PLAN SELECT seq FROM pushes WHERE seq > 0 AND {name} = 'x' ORDER BY seq LIMIT 100"
    details = [row["detail"] for row in rows(db_path, sql)]
    # A seek on the index, already in seq order: no scan of the table, no sort.
    assert details == [f"SEARCH pushes USING COVERING INDEX pushes_{name} ({name}=? AND rowid>?)"]
