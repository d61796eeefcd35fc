"""The queue and the writer under pressure: ack modes, full queue, locked file, failed commits, drain."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest

from handlers.keys import WRITER
from handlers.payload import decode, to_record
from storage.records import Outcome, PushRecord, Record, utc_now
from storage.sqlite import batches as writer_module
from storage.sqlite.batches import INSERT_ROWS, SqliteBatches, stored_hashes_sql
from storage.sqlite.connection import open_writer
from storage.sqlite.schema import migrate
from storage.writer import WriteFailed, Writer, WriterUnavailable
from tests.support import SAMPLE_BYTES, ClientFactory, both_backends, execute, record, rows, sample, sqlite_file

LockTaker = Callable[[], sqlite3.Connection]

# A trigger that makes the insert of any call id starting with "bad" fail, per backend.
REFUSE_BAD_CALLS = {
    "sqlite": (
        "CREATE TRIGGER refuse BEFORE INSERT ON pushes WHEN NEW.call_id LIKE 'bad%' "
        "BEGIN SELECT RAISE(ABORT, 'refused by test trigger'); END",
    ),
    "postgresql": (
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused by test trigger'; END $$",
        "CREATE TRIGGER refuse BEFORE INSERT ON pushes FOR EACH ROW WHEN (NEW.call_id LIKE 'bad%') "
        "EXECUTE FUNCTION refuse()",
    ),
}


async def wait_for_rows(db_path: Path, count: int, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while rows(db_path, "SELECT count(*) FROM pushes")[0][0] < count:
            await asyncio.sleep(0.02)


@both_backends
async def test_ack_queued_answers_before_commit_and_stores(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client(ack="queued")
    for n in range(5):
        response = await client.post("/push", data=orjson.dumps(sample(call_id=f"q{n}")))
        assert response.status == 200
        assert await response.read() == b"{}"
    await wait_for_rows(db_path, 5)


@both_backends
async def test_ack_committed_means_the_row_is_there_at_answer(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client(ack="committed")
    for n in range(5):
        assert (await client.post("/push", data=orjson.dumps(sample(call_id=f"c{n}")))).status == 200
        assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == n + 1


@both_backends
async def test_queue_full_is_503_with_retry_after(
    make_client: ClientFactory, db_path: Path, hold_lock: LockTaker
) -> None:
    client = await make_client(queue_max=1, ack_timeout=3.0, busy_timeout_ms=2000, retry_after=7)
    hold_lock()  # the writer blocks on the lock with its first batch; the next push fills the queue
    first = asyncio.create_task(client.post("/push", data=orjson.dumps(sample(call_id="f1"))))
    await asyncio.sleep(0.2)
    second = asyncio.create_task(client.post("/push", data=orjson.dumps(sample(call_id="f2"))))
    await asyncio.sleep(0.2)
    third = await client.post("/push", data=orjson.dumps(sample(call_id="f3")))
    assert third.status == 503
    assert third.headers["Retry-After"] == "7"
    assert (await third.json())["error"] == "queue_full"
    statuses = [(await first).status, (await second).status]
    assert statuses == [503, 503]  # neither could be stored while the lock was held
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 0


@both_backends
async def test_locked_database_gives_503_then_recovers(
    make_client: ClientFactory, db_path: Path, hold_lock: LockTaker
) -> None:
    client = await make_client(ack_timeout=1.0, busy_timeout_ms=3000)
    lock = hold_lock()
    async with asyncio.timeout(3):
        locked = await client.post("/push", data=orjson.dumps(sample(call_id="L1")))
    assert locked.status == 503
    assert (await locked.json())["error"] == "commit_timeout"
    assert "Retry-After" in locked.headers
    lock.rollback()
    # The timed-out push may still commit once the lock goes: a retry is then a duplicate, answered 200.
    retry = await client.post("/push", data=orjson.dumps(sample(call_id="L1")))
    assert retry.status == 200
    assert rows(db_path, "SELECT call_id FROM pushes")[0][0] == "L1"


@both_backends
async def test_failed_commit_is_503_and_the_writer_keeps_going(
    make_client: ClientFactory, db_path: Path, backend: str
) -> None:
    client = await make_client()
    assert (await client.post("/push", data=orjson.dumps(sample(call_id="ok-1")))).status == 200
    for statement in REFUSE_BAD_CALLS[backend]:  # a real failure inside the writer's transaction
        execute(db_path, statement)
    failed = await client.post("/push", data=orjson.dumps(sample(call_id="bad-1")))
    assert failed.status == 503
    assert (await failed.json())["error"] == "storage_error"
    assert "Retry-After" in failed.headers
    assert (await client.post("/push", data=orjson.dumps(sample(call_id="ok-2")))).status == 200
    execute(db_path, "DROP TRIGGER refuse" + (" ON pushes" if backend == "postgresql" else ""))
    assert (await client.post("/push", data=orjson.dumps(sample(call_id="bad-1")))).status == 200
    stored = [r[0] for r in rows(db_path, "SELECT call_id FROM pushes ORDER BY seq")]
    assert stored == ["ok-1", "ok-2", "bad-1"]


@both_backends
async def test_readyz_reports_a_locked_database(
    make_client: ClientFactory, db_path: Path, hold_lock: LockTaker
) -> None:
    client = await make_client(ack_timeout=0.5)
    assert (await client.get("/readyz")).status == 200
    assert (await client.get("/healthz")).status == 200
    lock = hold_lock()
    async with asyncio.timeout(5):  # the last probe's answer is reused for a second
        while (not_ready := await client.get("/readyz")).status == 200:
            await asyncio.sleep(0.1)
    assert not_ready.status == 503
    assert "did not take a write" in (await not_ready.json())["problems"][0]
    assert (await client.get("/healthz")).status == 200
    lock.rollback()
    async with asyncio.timeout(5):
        while (await client.get("/readyz")).status != 200:
            await asyncio.sleep(0.1)


@both_backends
async def test_readyz_reuses_a_recent_probe(make_client: ClientFactory) -> None:
    client = await make_client()
    writer = client.server.app[WRITER]
    before = writer.stats.batches
    started = time.monotonic()
    for _ in range(10):
        answers = await asyncio.gather(*(client.get("/readyz") for _ in range(5)))
        assert [answer.status for answer in answers] == [200] * 5
    # One probe per started second of the burst, however many checks came in.
    assert writer.stats.batches - before <= int(time.monotonic() - started) + 1


@asynccontextmanager
async def running_writer(db_path: Path, busy_timeout_ms: int = 1000, **kwargs: int) -> AsyncIterator[Writer]:
    """A started writer on a migrated file; closed at the end even when the test fails (closing twice is fine)."""
    conn = await open_writer(str(db_path), "FULL", busy_timeout_ms)
    writer = Writer(
        SqliteBatches(conn, lock_wait=busy_timeout_ms / 1000),
        queue_max=kwargs.get("queue_max", 100_000),
        max_batch=kwargs.get("max_batch", 64),
    )
    try:
        await migrate(conn, 1.0)
        writer.start()
        yield writer
    finally:
        await writer.close(drain_seconds=5)


async def test_shutdown_drains_everything_queued(db_path: Path) -> None:
    async with running_writer(db_path) as writer:
        for n in range(2000):
            writer.submit(record(f"d{n}"), wait=False)
        assert writer.depth > 0
        assert await writer.close(drain_seconds=9)
        assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 2000
        with pytest.raises(WriterUnavailable):
            writer.submit(record("late"), wait=False)


async def test_shutdown_answers_every_waiting_item(db_path: Path) -> None:
    async with running_writer(db_path, max_batch=10) as writer:
        futures = [writer.submit(record(f"w{n}"), wait=True) for n in range(100)]
        assert await writer.close(drain_seconds=9)
        results = await asyncio.gather(*(f for f in futures if f is not None))
    assert results == [Outcome.NEW] * 100


async def test_drain_that_overruns_fails_items_instead_of_losing_them(db_path: Path, hold_lock: LockTaker) -> None:
    # The lock wait (15 s) is far longer than the drain: closing must not wait for it.
    async with running_writer(db_path, busy_timeout_ms=15_000) as writer:
        hold_lock()
        future = writer.submit(record("stuck"), wait=True)
        assert future is not None
        await asyncio.sleep(0.1)  # the writer has taken the item and waits for the lock
        assert writer.depth == 0
        started = time.monotonic()
        closing = asyncio.create_task(writer.close(drain_seconds=0.3))
        await asyncio.sleep(0.05)
        assert writer.depth == 0, "the stop marker counts as a queued record"
        assert not await closing
        closed_in = time.monotonic() - started
        with pytest.raises((WriteFailed, WriterUnavailable)):
            await future
    assert closed_in < 0.3 + 0.5, closed_in


async def test_writer_batches_share_one_transaction(db_path: Path) -> None:
    async with running_writer(db_path, max_batch=50) as writer:
        futures = [writer.submit(record(f"b{n % 30}"), wait=True) for n in range(60)]
        results = await asyncio.gather(*(f for f in futures if f is not None))
    assert results.count(Outcome.NEW) == 30
    assert results.count(Outcome.DUPLICATE) == 30
    assert writer.stats.batches <= 3
    assert rows(db_path, "SELECT sum(deliveries) FROM pushes")[0][0] == 60


def spy_on_insert_alone(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each try of the single INSERT came to: "stored", "not applicable" or the error it raised."""
    tries: list[str] = []
    real = writer_module._insert_if_all_new

    def spy(records: Sequence[Record], db: sqlite3.Connection) -> list[Outcome] | None:
        try:
            outcomes = real(records, db)
        except sqlite3.Error as exc:
            tries.append(type(exc).__name__)
            raise
        tries.append("not applicable" if outcomes is None else "stored")
        return outcomes

    monkeypatch.setattr(writer_module, "_insert_if_all_new", spy)
    return tries


async def test_a_batch_holding_a_stored_key_is_answered_in_full_and_stores_nothing_twice(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch of new keys only is one INSERT on its own; one stored key among them makes that INSERT fail as a
    # whole, and the batch is written the long way: every outcome right, every delivery counted once.
    tries = spy_on_insert_alone(monkeypatch)
    async with running_writer(db_path, max_batch=64) as writer:
        future = writer.submit(record("old"), wait=True)
        assert future is not None
        assert await future is Outcome.NEW
        futures = [writer.submit(record(call_id), wait=True) for call_id in ("n1", "old", "n2")]
        outcomes = await asyncio.gather(*(f for f in futures if f is not None))
    assert outcomes == [Outcome.NEW, Outcome.DUPLICATE, Outcome.NEW]
    assert writer.stats.batches == 2
    assert tries == ["stored", "IntegrityError"]
    stored = rows(db_path, "SELECT call_id, deliveries FROM pushes ORDER BY seq")
    assert [tuple(r) for r in stored] == [("old", 2), ("n1", 1), ("n2", 1)]


async def test_a_batch_larger_than_one_insert_is_written_in_chunks_in_one_transaction(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tries = spy_on_insert_alone(monkeypatch)
    count = INSERT_ROWS * 2 + 5
    async with running_writer(db_path, max_batch=count) as writer:
        futures = [writer.submit(record(f"big{n}"), wait=True) for n in range(count)]
        outcomes = await asyncio.gather(*(f for f in futures if f is not None))
    assert outcomes == [Outcome.NEW] * count
    assert writer.stats.batches == 1
    assert tuple(rows(db_path, "SELECT count(*), sum(deliveries) FROM pushes")[0]) == (count, count)
    assert tries == ["not applicable"]


def with_body(call_id: str, intention: str) -> PushRecord:
    body = orjson.dumps(sample(call_id=call_id, intention=intention))
    return to_record(body, decode(body), utc_now())


async def test_new_version_only_when_a_version_row_is_added(db_path: Path) -> None:
    first, changed = with_body("v", "A"), with_body("v", "B")
    async with running_writer(db_path, max_batch=64) as writer:
        one_by_one = []
        for item in (first, changed, changed, first):  # separate batches
            future = writer.submit(item, wait=True)
            assert future is not None
            one_by_one.append(await future)
        third = with_body("v", "C")
        futures = [writer.submit(item, wait=True) for item in (third, third, changed)]  # one batch
        in_one_batch = await asyncio.gather(*(f for f in futures if f is not None))
    assert one_by_one == [Outcome.NEW, Outcome.NEW_VERSION, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert in_one_batch == [Outcome.NEW_VERSION, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert rows(db_path, "SELECT count(*) FROM push_versions")[0][0] == 2
    assert rows(db_path, "SELECT deliveries FROM pushes")[0][0] == 7


async def test_sample_bytes_round_trip_through_writer(db_path: Path) -> None:
    async with running_writer(db_path) as writer:
        future = writer.submit(to_record(SAMPLE_BYTES, decode(SAMPLE_BYTES), utc_now()), wait=True)
        assert future is not None
        assert await future is Outcome.NEW
    assert rows(db_path, "SELECT body FROM pushes")[0][0] == SAMPLE_BYTES.decode()


async def test_duplicate_look_up_searches_the_index_instead_of_scanning(db_path: Path) -> None:
    async with running_writer(db_path) as writer:
        for n in range(50):
            writer.submit(record(f"s{n}"), wait=False)
    with sqlite_file(db_path) as conn:
        conn.execute("ANALYZE")
    plan = rows(db_path, "EXPLAIN QUERY PLAN " + stored_hashes_sql(2), ("w", "n", "a", "w", "n", "b"))
    details = [row["detail"] for row in plan]
    assert any(d.startswith("SEARCH p USING INDEX sqlite_autoindex_pushes_1") for d in details), details
    assert not any(d.startswith("SCAN p") for d in details), details


async def test_queued_mode_waits_for_the_commit_once_a_whole_batch_is_waiting(
    db_path: Path, hold_lock: LockTaker
) -> None:
    async with running_writer(db_path, busy_timeout_ms=5000, max_batch=2) as writer:
        lock = hold_lock()
        first = asyncio.create_task(writer.store(record("bp0"), wait=False, size=1, commit_within=9))
        assert await first is None  # answered at once; the writer takes it and waits for the lock
        while writer.depth:
            await asyncio.sleep(0.01)
        for n in (1, 2):
            assert await writer.store(record(f"bp{n}"), wait=False, size=1, commit_within=9) is None
        # Two queued behind the batch being written: the next push waits for its commit.
        third = asyncio.create_task(writer.store(record("bp3"), wait=False, size=1, commit_within=9))
        await asyncio.sleep(0.2)
        assert not third.done()
        lock.rollback()
        assert await third == Outcome.NEW
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 4
