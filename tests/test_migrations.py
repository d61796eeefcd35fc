"""Migrations: ordered steps recorded in user_version, each applied once, a failed one rolled back."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage.connection import open_writer
from storage.migrations import MIGRATIONS, Migration, migrate, schema_version
from tests.conftest import rows


async def test_migrations_apply_once(db_path: Path) -> None:
    conn = await open_writer(str(db_path), "FULL", 1000)
    try:
        assert await migrate(conn) == [m.name for m in MIGRATIONS]
        assert await migrate(conn) == []
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
            await migrate(conn, (*MIGRATIONS, broken))
        assert await schema_version(conn) == len(MIGRATIONS)
    finally:
        await conn.close()
    assert rows(db_path, "SELECT name FROM sqlite_master WHERE name = 'half_done'") == []


async def test_newer_schema_is_refused(db_path: Path) -> None:
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn2 = await open_writer(str(db_path), "FULL", 1000)
    try:
        with pytest.raises(RuntimeError, match="newer than this program knows"):
            await migrate(conn2)
    finally:
        await conn2.close()
