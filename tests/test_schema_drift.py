"""The two backends' schemas, side by side: the same tables, columns, indexes and views, or the build fails.

Each database writes its schema in its own dialect (storage/sqlite/schema.py, storage/postgres/schema.py);
this is what keeps them one schema. Types differ by dialect and are not compared; names, order, NOT NULL,
index columns and view columns are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import migrated, rows

# Each table's row id: SQLite ends every index with it implicitly, PostgreSQL's indexes name it.
ROW_IDS = {"pushes": "seq"}
# PostgreSQL's record of applied steps; SQLite keeps the version in the file header.
PG_ONLY_TABLES = {"schema_migrations"}

Schema = dict[str, Any]


def _without_row_id(table: str, columns: list[str]) -> tuple[str, ...]:
    row_id = ROW_IDS.get(table, "id")
    return tuple(columns[:-1] if columns and columns[-1] == row_id else columns)


def sqlite_schema(db: Path) -> Schema:
    objects = rows(db, "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
    tables = sorted(r["name"] for r in objects if r["type"] == "table")
    views = sorted(r["name"] for r in objects if r["type"] == "view")
    columns = {
        t: [(c["name"], bool(c["notnull"] or c["pk"])) for c in rows(db, f"PRAGMA table_info({t})")] for t in tables
    }
    view_columns = {v: [c["name"] for c in rows(db, f"PRAGMA table_info({v})")] for v in views}
    indexes = {
        r["name"]: (
            r["tbl_name"],
            _without_row_id(r["tbl_name"], [c["name"] for c in rows(db, f"PRAGMA index_info({r['name']})")]),
        )
        for r in objects
        if r["type"] == "index"
    }
    return {"tables": tables, "columns": columns, "views": views, "view_columns": view_columns, "indexes": indexes}


def postgres_schema(url: str) -> Schema:
    tables = sorted(
        r[0]
        for r in rows(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        if r[0] not in PG_ONLY_TABLES
    )
    views = sorted(r[0] for r in rows(url, "SELECT viewname FROM pg_views WHERE schemaname = 'public'"))
    ordered = (
        "SELECT column_name, is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = ? ORDER BY ordinal_position"
    )
    columns = {t: [(c[0], c[1] == "NO") for c in rows(url, ordered, (t,))] for t in tables}
    view_columns = {v: [c[0] for c in rows(url, ordered, (v,))] for v in views}
    # Indexes the schema names, not those behind a primary key or UNIQUE constraint (SQLite's sqlite_autoindex_*).
    found = rows(
        url,
        "SELECT i.relname, t.relname, array_agg(a.attname ORDER BY k.n) FROM pg_index AS x"
        " JOIN pg_class AS i ON i.oid = x.indexrelid JOIN pg_class AS t ON t.oid = x.indrelid"
        " JOIN pg_namespace AS s ON s.oid = t.relnamespace AND s.nspname = 'public'"
        " CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k (attnum, n)"
        " JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = k.attnum"
        " WHERE NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conindid = x.indexrelid)"
        " GROUP BY i.relname, t.relname",
    )
    indexes = {r[0]: (r[1], _without_row_id(r[1], list(r[2]))) for r in found if r[1] not in PG_ONLY_TABLES}
    return {"tables": tables, "columns": columns, "views": views, "view_columns": view_columns, "indexes": indexes}


def test_sqlite_and_postgresql_schemas_have_the_same_tables_columns_indexes_and_views(
    tmp_path: Path, pg_cluster: Any
) -> None:
    sqlite = sqlite_schema(migrated(tmp_path / "pushes.sqlite3"))
    postgres = postgres_schema(migrated(pg_cluster.new_database()))
    assert "forward_jobs" in sqlite["tables"]  # the comparison sees the whole schema, the outbox included
    for part in ("tables", "views", "columns", "view_columns", "indexes"):
        assert postgres[part] == sqlite[part], f"the backends' {part} differ"
