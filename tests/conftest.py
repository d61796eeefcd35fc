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
from tests.support import ClientFactory, seen_from


@pytest.fixture
def away_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory: server.main() reads ./config.toml when present, and the checkout has one."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
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
def hold_lock(db_path: Path) -> Iterator[Callable[[], sqlite3.Connection]]:
    """Another process-like connection that takes the write lock until the test releases it."""
    held: list[sqlite3.Connection] = []

    def take() -> sqlite3.Connection:
        conn = sqlite3.connect(db_path, isolation_level=None, timeout=5)
        conn.execute("BEGIN EXCLUSIVE")
        held.append(conn)
        return conn

    yield take
    for conn in held:
        conn.rollback()
        conn.close()
