"""Fixtures: the real app from the factory on a fresh SQLite file, and helpers to read that file."""

from __future__ import annotations

import copy
import dataclasses
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from commands.send_sample import vendor_sample
from plumbing.settings import Settings
from server import create_app

DATA = Path(__file__).parent / "data"
SAMPLE_BYTES = vendor_sample()

ClientFactory = Callable[..., Any]


def sample(**call_overrides: Any) -> dict[str, Any]:
    """A fresh copy of the vendor's sample push, with fields of ``call`` replaced."""
    push: dict[str, Any] = copy.deepcopy(orjson.loads(SAMPLE_BYTES))
    push["call"].update(call_overrides)
    return push


def rows(db_path: str | Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Read the database the way an operator would: a separate connection to the file."""
    # closing(): a sqlite3 connection refers to itself through its statement cache, so without an
    # explicit close its file stays open until the garbage collector runs.
    with closing(sqlite3.connect(db_path)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    """Start the real app on a test server; keyword arguments change the settings."""

    async def start(**changes: Any) -> TestClient[Any, Any]:
        return await aiohttp_client(create_app(dataclasses.replace(settings, **changes).validate()))  # type: ignore[no-any-return]

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
