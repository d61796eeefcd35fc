"""What tests and bench share: the vendor's sample, the database file as an operator sees it, and HTTP.

Fixtures live in conftest.py and nothing imports from there; helpers live here.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import sqlite3
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from aiohttp.typedefs import Handler, Middleware

from commands.send_sample import vendor_sample
from handlers.payload import decode, to_record
from storage.postgres import schema as pg_schema
from storage.postgres.connection import is_postgres, without_nul
from storage.records import PushRecord, utc_now
from storage.sqlite.connection import open_writer
from storage.sqlite.schema import migrate

SAMPLE_BYTES = vendor_sample()

# The typed columns the vendor's sample is stored with.
TYPED = {
    "workflow_id": "079918b288xxxxxxxx3815e2a8030eb",
    "node_id": "f878645926xxxxxxxxb0b779ba254",
    "call_id": "817377d194xxxxxxxxc8ad463bc81d996a",
    "workflow_name": "test_api_action6",
    "node_name": "API2",
    "case_id": "12345.0",
    "callee_number": "+861xxxxxxxx5721",
    "task_id": "b1a9e2ea8xxxxxxxx1551b6454b414b",
    "robot_id": "4496",
    "call_start_time": "2024-03-11 15:58:26",
    "call_end_time": "2024-03-11 15:59:12",
    "intention": "E",
    "hangup_type": "ByCallee",
    "ring_type": "normal",
}

# An api_token for tests that guard the read routes.
TOKEN = "read-0123456789abcdef"

# On a test (or as a module's pytestmark): run it once per backend, each on a fresh database (the backend and
# db_path fixtures in conftest.py).
BACKENDS = ("sqlite", "postgresql")
both_backends = pytest.mark.parametrize("backend", BACKENDS, indirect=True)

PathOrUrl = TypeVar("PathOrUrl", Path, str)

# The make_client fixture: starts the real app; keyword arguments change the settings.
ClientFactory = Callable[..., Any]


def sample(**call_overrides: Any) -> dict[str, Any]:
    """A fresh copy of the vendor's sample push, with fields of ``call`` replaced."""
    push: dict[str, Any] = copy.deepcopy(orjson.loads(SAMPLE_BYTES))
    push["call"].update(call_overrides)
    return push


def record(call_id: str) -> PushRecord:
    """The sample with ``call_id``, checked and built the way the push handler does."""
    body = orjson.dumps(sample(call_id=call_id))
    return to_record(body, decode(body), utc_now())


def report(name: str, **figures: object) -> None:
    """Print a test's figures on one line (``pytest -s`` shows them)."""
    print(f"\n[{name}] " + ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in figures.items()))


# -- the database file ----------------------------------------------------------------------------


@contextmanager
def sqlite_file(path: str | Path, **options: Any) -> Iterator[sqlite3.Connection]:
    """A separate connection to the file, the way an operator opens it: committed if the block succeeds,
    rolled back if it raises, and closed either way.

    ``with sqlite_file(...)`` only commits: the connection refers to itself through its statement
    cache, so its file stays open until the garbage collector runs.
    """
    with closing(sqlite3.connect(path, **options)) as conn, conn:
        yield conn


def rows(db_path: str | Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """The rows of ``sql`` (with ``?`` placeholders) from the file, or from PostgreSQL when ``db_path`` is a URL.

    Rows are ``sqlite3.Row`` or ``asyncpg.Record``: both answer ``row[0]``, ``row["name"]`` and ``dict(row)``.
    """
    if is_postgres(str(db_path)):
        from tests.pg_cluster import run_sync

        return run_sync(str(db_path), sql, tuple(without_nul(params)))  # U+0000 as the receiver stores it
    with sqlite_file(db_path) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, params).fetchall()


def execute(db_path: str | Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Change the database behind the receiver's back, committed, the way an operator's shell would."""
    if is_postgres(str(db_path)):
        rows(db_path, sql, params)
        return
    with sqlite_file(db_path) as conn:
        conn.execute(sql, params)


def stored_call_ids(db_path: Path | str) -> set[str]:
    return {row[0] for row in rows(db_path, "SELECT call_id FROM pushes")}


async def create_schema(path: str | Path, synchronous: str = "NORMAL") -> None:
    """Open the file the way the receiver does (WAL, ``synchronous``) and apply its migrations; or on a
    PostgreSQL URL, apply that schema's."""
    if is_postgres(str(path)):
        pg_conn = await asyncpg.connect(str(path), timeout=10)
        try:
            await pg_schema.migrate(pg_conn)
        finally:
            await pg_conn.close()
        return
    conn = await open_writer(str(path), synchronous, busy_timeout_ms=3000)
    try:
        await migrate(conn, 1.0)
    finally:
        await conn.close()


def migrated(path: PathOrUrl) -> PathOrUrl:
    """``path`` (or a PostgreSQL URL), made a receiver database with no rows."""
    asyncio.run(create_schema(path))
    return path


@contextmanager
def small_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A size-limited file system of our own, so that the disk can really fill up."""
    mount_point.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except FileNotFoundError:
        pytest.skip("no mount command here, so no size-limited file system can be made")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True, timeout=10)


# -- HTTP -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: bytes, timeout: float = 10.0, tls: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """POST to a running server: status and body, error statuses included."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    return send(request, timeout, tls)


def get(
    url: str, timeout: float = 10.0, tls: ssl.SSLContext | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    return send(urllib.request.Request(url, headers=headers or {}), timeout, tls)


def send(request: urllib.request.Request, timeout: float, tls: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=tls) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def seen_from(peer: str) -> Middleware:
    """A middleware, outermost, that makes every request seem to come from ``peer``.

    The test server listens on loopback and the machine may have no other address to connect from; only
    the peer address changes, and the access rules, routes and handlers that see it are the real ones.
    """

    @web.middleware
    async def replace_peer(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await handler(request.clone(remote=peer))

    return replace_peer


async def post_push(client: TestClient[Any, Any], push: dict[str, Any]) -> None:
    """POST ``push`` to the app under test, which must take it."""
    response = await client.post("/push", data=orjson.dumps(push))
    assert response.status == 200, await response.text()


async def get_json(client: TestClient[Any, Any], path: str, status: int = 200, **params: Any) -> Any:
    """GET from the app under test, expecting ``status``; the decoded body."""
    response = await client.get(path, params={k: str(v) for k, v in params.items()})
    assert response.status == status, await response.text()
    return await response.json()


async def next_event(response: ClientResponse) -> tuple[str, object]:
    """The next event's name and decoded data, skipping comments."""
    name, data = "", b""
    async with asyncio.timeout(5):
        while True:
            line = (await response.content.readline()).rstrip(b"\n")
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
            elif not line and name:
                return name, orjson.loads(data)
