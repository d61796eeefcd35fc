"""Fixtures only: the real app from the factory on a fresh SQLite file. Helpers are in tests/support.py."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from plumbing.settings import Settings
from server import create_app
from storage.postgres.connection import is_postgres
from tests.support import ClientFactory, seen_from


@pytest.fixture
def away_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory: server.main() reads ./config.toml when present, and the checkout has one."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """sqlite unless the test is marked with ``tests.support.both_backends``."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the whole run, removed at the end (tests/pg_cluster.py)."""
    from tests.pg_cluster import PgCluster, server_binaries

    bin_dir = server_binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql; make test installs it)")
    cluster = PgCluster(bin_dir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
def db_path(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Any:
    """A SQLite file's path, or under the postgresql backend the URL of a fresh database (with its password)."""
    if backend == "postgresql":
        return request.getfixturevalue("pg_cluster").new_database()
    return tmp_path / "pushes.sqlite3"


@pytest.fixture
def settings(db_path: Path) -> Settings:
    return Settings(db_path=str(db_path), ack_timeout=2.0, busy_timeout_ms=500)


@pytest.fixture
def make_client(aiohttp_client: Any, settings: Settings) -> ClientFactory:
    """Start the real app on a test server; keyword arguments change the settings. ``peer`` is the client
    address the app sees instead of loopback (see ``tests.support.seen_from``)."""

    async def start(peer: str | None = None, **changes: Any) -> TestClient[Any, Any]:
        app = create_app(dataclasses.replace(settings, **changes).validate())
        if peer is not None:
            app.middlewares.insert(0, seen_from(peer))
        return await aiohttp_client(app)  # type: ignore[no-any-return]

    return start


@pytest.fixture
def hold_lock(db_path: Any) -> Iterator[Callable[[], Any]]:
    """Another process-like connection that takes the write lock until the test releases it (``rollback()``)."""
    held: list[Any] = []

    def take() -> Any:
        if is_postgres(str(db_path)):
            from tests.pg_cluster import HeldFeedLock

            held.append(HeldFeedLock(str(db_path)))
            return held[-1]
        conn = sqlite3.connect(db_path, isolation_level=None, timeout=5)
        conn.execute("BEGIN EXCLUSIVE")
        held.append(conn)
        return conn

    yield take
    for lock in held:
        lock.rollback()
        if isinstance(lock, sqlite3.Connection):
            lock.close()
