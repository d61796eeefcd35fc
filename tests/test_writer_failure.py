"""The writer fails under the real app: its connection breaks, or its task dies. Nobody waits forever.

The failures are injected through the real objects (the writer's connection and task); everything else
is the app from the factory on a real SQLite file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import server
from handlers.keys import WRITER
from plumbing.settings import Settings
from storage.sqlite.batches import SqliteBatches
from storage.sqlite.connection import open_writer
from storage.writer import WriteFailed, Writer, WriterUnavailable
from tests.load import push_body
from tests.support import ClientFactory, record, report, rows, stored_call_ids

pytestmark = pytest.mark.failure

ACK_TIMEOUT = 2.0


async def push(client: TestClient[Any, Any], call_id: str) -> tuple[int, str | None, float]:
    """Status, error code and seconds taken, with a hard limit well past ack_timeout."""
    started = time.monotonic()
    async with asyncio.timeout(ACK_TIMEOUT + 3):
        response = await client.post("/push", data=push_body(call_id))
        error = None if response.status == 200 else (await response.json())["error"]
    return response.status, error, time.monotonic() - started


async def test_broken_connection_is_503_then_the_writer_opens_a_new_one(
    make_client: ClientFactory, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = await make_client(ack_timeout=ACK_TIMEOUT)
    writer = client.server.app[WRITER]
    assert (await push(client, "before"))[0] == 200

    await writer._batches._conn.close()  # the injected failure: the connection dies under the writer
    not_ready = await client.get("/readyz")
    assert not_ready.status == 503
    assert "did not take a write" in (await not_ready.json())["problems"][0]
    async with asyncio.timeout(5):  # the failed probe made the writer reconnect; its answer is kept 1 s
        while (await client.get("/readyz")).status != 200:
            await asyncio.sleep(0.1)

    await writer._batches._conn.close()
    answers = await asyncio.gather(*(push(client, f"during-{n}") for n in range(20)))
    after = await push(client, "after")
    acknowledged = {"before", "after"} | {f"during-{n}" for n, a in enumerate(answers) if a[0] == 200}
    stored = stored_call_ids(db_path)
    report(
        "broken connection",
        answers=sorted({(a[0], a[1]) for a in answers}, key=str),
        slowest_seconds=round(max(a[2] for a in answers), 3),
        after=after[:2],
        acknowledged=len(acknowledged),
        stored=len(stored),
        lost=len(acknowledged - stored),
    )
    assert (503, "storage_error") in {(a[0], a[1]) for a in answers}
    assert {a[0] for a in answers} <= {200, 503}
    assert max(a[2] for a in answers) < ACK_TIMEOUT
    assert after[0] == 200
    assert acknowledged <= stored
    assert "the database connection is broken; opening a new one" in caplog.text


async def test_failed_reopen_keeps_the_writer_running_and_answering(
    tmp_path: Path, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    conn = await open_writer(str(db_path), "FULL", 1000)
    reopen = partial(open_writer, str(blocked / "pushes.sqlite3"), "FULL", 1000)  # cannot be created
    writer = Writer(SqliteBatches(conn, reopen=reopen), queue_max=100, max_batch=10)
    writer.start()
    await conn.close()
    for n in range(2):
        future = writer.submit(record(f"r{n}"), wait=True)
        assert future is not None
        with pytest.raises(WriteFailed, match="connection"):
            await asyncio.wait_for(future, 2)
    assert writer.running
    assert caplog.text.count("could not reopen the database") == 2
    await writer.close(drain_seconds=1)


LockTaker = Callable[[], sqlite3.Connection]


async def test_dead_writer_task_makes_readyz_503_and_answers_every_push_at_once(
    make_client: ClientFactory, db_path: Path, hold_lock: LockTaker
) -> None:
    client = await make_client(ack_timeout=ACK_TIMEOUT, busy_timeout_ms=3000)
    writer = client.server.app[WRITER]
    assert (await push(client, "before"))[0] == 200
    lock = hold_lock()  # the writer's next batch waits on it; the rest queue up behind
    waiting = [asyncio.create_task(push(client, f"queued-{n}")) for n in range(10)]
    await asyncio.sleep(0.3)
    assert writer._task is not None
    killed_at = time.monotonic()
    writer._task.cancel()  # the injected failure: the writer task dies
    answers = await asyncio.gather(*waiting)
    answered_in = time.monotonic() - killed_at
    lock.rollback()
    ready = await client.get("/readyz")
    late = await push(client, "late")
    healthz = await client.get("/healthz")
    report(
        "dead writer",
        answers=sorted({(a[0], a[1]) for a in answers}, key=str),
        all_answered_seconds_after_death=round(answered_in, 3),
        readyz=ready.status,
        late_push=late[:2],
        healthz=healthz.status,
    )
    assert {a[0] for a in answers} == {503}
    assert answered_in < 0.5  # at once, not after ack_timeout
    assert ready.status == 503
    assert (await ready.json())["problems"] == ["the writer is not running"]
    assert late[:2] == (503, "writer_unavailable")
    assert late[2] < 0.5
    assert healthz.status == 200
    assert stored_call_ids(db_path) == {"before"}
    with pytest.raises(WriterUnavailable):
        writer.submit(record("direct"), wait=True)
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 1


async def test_a_start_that_fails_after_the_database_opened_closes_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_dispatcher(*args: object) -> None:
        raise RuntimeError("the dispatcher could not start")

    monkeypatch.setattr(server, "start_dispatcher", broken_dispatcher)
    before = {t for t in threading.enumerate() if not t.daemon}
    runner = web.AppRunner(server.create_app(settings))
    with pytest.raises(RuntimeError, match="could not start"):
        await runner.setup()
    # aiosqlite's connection threads are not daemons: one left open would keep the process from exiting.
    async with asyncio.timeout(5):
        while {t for t in threading.enumerate() if not t.daemon} - before:
            await asyncio.sleep(0.05)
