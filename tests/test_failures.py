"""The real server process under load while things go wrong: every 200 must be in the file afterwards.

Each test prints its figures (``pytest -s -m failure`` shows them).
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from plumbing.settings import Settings
from tests.load import Tally, background_load, deliver_all, error_code
from tests.process import running_server
from tests.support import get, report, rows, small_tmpfs, stored_call_ids

pytestmark = pytest.mark.failure

DEFAULTS = Settings()


def integrity(db_path: Path) -> str:
    return str(rows(db_path, "PRAGMA integrity_check")[0][0])


# A process crash loses no commit whatever ``synchronous`` says (the data is with the kernel); OFF is the
# setting that syncs least, so it is the one worth checking besides the default.
@pytest.mark.parametrize("synchronous", ["FULL", "OFF"])
async def test_kill_9_under_load_loses_no_acknowledged_push(tmp_path: Path, synchronous: str) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    db_path = tmp_path / "pushes.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text(f'synchronous = "{synchronous}"\n')
    tally = Tally()
    kills, cut_off, served = 5, 0, []
    started = time.monotonic()
    for kill in range(kills):
        with running_server(tmp_path, db_path, "--config", str(config)) as server:
            async with background_load(f"{server.url}/push", tally, prefix=f"kill{kill}"):
                await asyncio.sleep(rng.uniform(0.3, 1.2))
                killed_at = time.monotonic()
                exit_code = await asyncio.to_thread(server.stop, signal.SIGKILL)
            assert exit_code == -signal.SIGKILL
            this_run = [a for a in tally.answers if a.call_id.startswith(f"kill{kill}-")]
            served.append(sum(1 for a in this_run if a.status == 200))
            # Requests on the wire when the process died: their answers never came.
            cut_off += sum(1 for a in this_run if a.started < killed_at and not isinstance(a.status, int))
    with running_server(tmp_path, db_path, "--config", str(config)) as server:  # it opens after the last kill
        assert server.stop() == 0
    stored = stored_call_ids(db_path)
    lost = tally.acknowledged - stored
    report(
        f"kill -9, synchronous {synchronous}",
        seed=seed,
        kills=kills,
        acknowledged_per_run=served,
        acknowledged=len(tally.acknowledged),
        stored=len(stored),
        lost=len(lost),
        stored_unacknowledged=len(stored - tally.acknowledged),
        cut_off_in_flight=cut_off,
        answers=tally.kinds,
        seconds=round(time.monotonic() - started, 1),
    )
    assert not lost, sorted(lost)[:10]
    assert all(served), f"a server took no push before its kill: {served}"
    assert rows(db_path, "SELECT count(*) FROM pushes WHERE deliveries != 1")[0][0] == 0
    assert integrity(db_path) == "ok"


async def test_sigterm_under_load_exits_zero_within_10s_and_keeps_every_acknowledged_push(tmp_path: Path) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    tally = Tally()
    with running_server(tmp_path, db_path) as server:
        async with background_load(f"{server.url}/push", tally, prefix="term"):
            await asyncio.sleep(1.0)
            signalled_at = time.monotonic()
            exit_code = await asyncio.to_thread(server.stop, signal.SIGTERM, 10.0)
            exit_seconds = time.monotonic() - signalled_at
    in_flight = sum(1 for a in tally.answers if a.started < signalled_at < a.started + a.seconds)
    stored = stored_call_ids(db_path)
    lost = tally.acknowledged - stored
    report(
        "SIGTERM",
        exit_code=exit_code,
        exit_seconds=round(exit_seconds, 2),
        in_flight_at_signal=in_flight,
        acknowledged=len(tally.acknowledged),
        stored=len(stored),
        lost=len(lost),
        stored_unanswered=len(stored - tally.acknowledged),
        answers=tally.kinds,
    )
    assert exit_code == 0
    assert exit_seconds < 10
    assert not lost, sorted(lost)[:10]
    # A request the server took in was answered before the exit: the dropped ones were never read.
    assert stored == tally.acknowledged
    assert in_flight > 0, "no request was in flight at the signal"
    assert "writer drained and database closed" in server.log()


@contextmanager
def locked_by_sqlite3_shell(db_path: Path) -> Iterator[Callable[[], float]]:
    """The sqlite3 command-line shell, another process, holds BEGIN EXCLUSIVE until the test calls release().

    release() ends the transaction, waits for the shell to exit and returns the time it did.
    """
    shell_path = shutil.which("sqlite3")
    if shell_path is None:
        pytest.fail("the sqlite3 command-line shell is not installed (Debian package sqlite3)")
    shell = subprocess.Popen(
        [shell_path, str(db_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert shell.stdin is not None
    assert shell.stdout is not None
    try:
        # The server writes all the time: wait for its transaction to end, then say when the lock is ours.
        shell.stdin.write(".timeout 5000\nBEGIN EXCLUSIVE;\nSELECT 'locked';\n")
        shell.stdin.flush()
        assert shell.stdout.readline() == "locked\n", "the sqlite3 shell did not take the lock"

        def release() -> float:
            _, errors = shell.communicate("ROLLBACK;\n", timeout=5)
            assert shell.returncode == 0, errors
            return time.monotonic()

        yield release
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()


async def test_database_locked_by_another_process_is_503_then_200_within_a_second(tmp_path: Path) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    tally = Tally()
    hold = DEFAULTS.ack_timeout + 1.0  # longer than any request may wait
    with running_server(tmp_path, db_path) as server:
        url = f"{server.url}/push"
        async with background_load(url, tally, prefix="lock", concurrency=8):
            await asyncio.sleep(0.3)  # a few stored before the lock
            with locked_by_sqlite3_shell(db_path) as release:
                locked_at = time.monotonic()
                await asyncio.sleep(hold)
                released_at = release()
            await asyncio.sleep(1.5)
        assert server.proc.poll() is None
        assert server.stop() == 0
    during = [a for a in tally.answers if locked_at < a.started + a.seconds < released_at]
    # A 200 may still arrive just after the lock was taken, for a batch committed just before; a request
    # sent after the lock was taken cannot be stored before the release.
    stored_during = [a for a in during if a.status == 200 and a.started > locked_at]
    last_200_during = max((a.started + a.seconds - locked_at for a in during if a.status == 200), default=0.0)
    after = [a for a in tally.answers if a.started > released_at]
    first_200_after = min(a.started + a.seconds for a in tally.answers if a.status == 200 and a.started > locked_at)
    stored = stored_call_ids(db_path)
    lost = tally.acknowledged - stored
    report(
        "database locked",
        held_seconds=round(released_at - locked_at, 2),
        answered_while_locked=Tally(during).kinds,
        last_200_after_lock_seconds=round(last_200_during, 3),
        first_200_after_release_seconds=round(first_200_after - released_at, 3),
        started_after_release=Tally(after).kinds,
        slowest_answer_seconds=round(tally.slowest(), 2),
        acknowledged=len(tally.acknowledged),
        stored=len(stored),
        lost=len(lost),
    )
    assert Tally(during).statuses[503] > 0, "nothing was answered 503 while the lock was held"
    assert all(a.status == 503 and a.retry_after == str(DEFAULTS.retry_after) for a in during if a.status != 200)
    assert not stored_during
    assert last_200_during < DEFAULTS.ack_timeout  # answers for commits made before the lock, sent late at most
    assert first_200_after - released_at < 1.0
    assert after
    assert all(a.status == 200 for a in after)
    assert tally.slowest() < DEFAULTS.ack_timeout + 1.0
    assert not lost, sorted(lost)[:10]


async def test_duplicate_storm_keeps_one_row_per_call(tmp_path: Path) -> None:
    calls, deliveries = 1000, 6
    db_path = tmp_path / "pushes.sqlite3"
    order = [f"storm-{n}" for n in range(calls) for _ in range(deliveries)]
    random.shuffle(order)
    tally = Tally()
    with running_server(tmp_path, db_path) as server:
        started = time.monotonic()
        await deliver_all(f"{server.url}/push", order, tally, concurrency=32)
        seconds = time.monotonic() - started
        assert server.stop() == 0
    count, total = rows(db_path, "SELECT count(*), sum(deliveries) FROM pushes")[0]
    report(
        "duplicate storm",
        requests=len(order),
        answers=tally.kinds,
        rows=count,
        deliveries=total,
        seconds=round(seconds, 1),
        per_second=round(len(order) / seconds),
    )
    assert tally.statuses == {200: calls * deliveries}
    assert (count, total) == (calls, calls * deliveries)
    assert rows(db_path, "SELECT count(*) FROM pushes WHERE deliveries != ?", (deliveries,))[0][0] == 0


async def test_sigterm_while_the_file_stays_locked_exits_within_10s(tmp_path: Path) -> None:
    """A lock wait longer than the exit budget: the drain gives up in time and the file is closed."""
    db_path = tmp_path / "pushes.sqlite3"
    config = tmp_path / "config.toml"
    config.write_text("busy_timeout_ms = 15000\n")
    tally = Tally()
    with running_server(tmp_path, db_path, "--config", str(config)) as server:
        with locked_by_sqlite3_shell(db_path) as release:
            async with background_load(f"{server.url}/push", tally, prefix="held", concurrency=2):
                await asyncio.sleep(0.5)  # the writer is inside its lock wait
                signalled_at = time.monotonic()
                exit_code = await asyncio.to_thread(server.stop, signal.SIGTERM, 12.0)
                exit_seconds = time.monotonic() - signalled_at
            release()
        log = server.log()
    stored = stored_call_ids(db_path)
    report("SIGTERM, file locked", exit_code=exit_code, exit_seconds=round(exit_seconds, 2), answers=tally.kinds)
    assert exit_code == 0, log
    assert exit_seconds < 10
    assert "left unwritten" in log
    assert "writer drained and database closed" not in log
    assert tally.acknowledged <= stored


def fill_up(path: Path) -> int:
    """Write ``path`` until the file system refuses another byte; return how many bytes it took."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 16, 1 << 12, 1):
            chunk = b"\0" * size
            while True:
                try:
                    written += os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return written


async def test_disk_full_is_503_without_a_crash_and_recovers_when_space_returns(tmp_path: Path) -> None:
    tally = Tally()
    with small_tmpfs(tmp_path / "small", "64m") as small:
        db_path = small / "pushes.sqlite3"
        with running_server(tmp_path, db_path) as server:
            url = f"{server.url}/push"
            async with background_load(url, tally, prefix="before", concurrency=4):
                await asyncio.sleep(0.3)
            # With the log emptied into the file, every new commit needs new space; without this, a write
            # may still fit in log space freed by an earlier checkpoint (and would rightly be stored).
            assert rows(db_path, "PRAGMA wal_checkpoint(TRUNCATE)")[0][0] == 0
            filler = small / "filler"
            filled = fill_up(filler)
            async with background_load(url, tally, prefix="full", concurrency=4):
                await asyncio.sleep(1.5)
                ready_status, _ = await asyncio.to_thread(get, f"{server.url}/readyz")
            filler.unlink()
            freed_at = time.monotonic()
            async with background_load(url, tally, prefix="after", concurrency=4):
                await asyncio.sleep(1.5)
            assert server.proc.poll() is None, "the server died"
            assert server.stop() == 0
            stored = stored_call_ids(db_path)
            check = integrity(db_path)
    while_full = Tally([a for a in tally.answers if a.call_id.startswith("full-")])
    after = Tally([a for a in tally.answers if a.call_id.startswith("after-")])
    first_200_after = min(a.started + a.seconds for a in after.answers if a.status == 200) - freed_at
    lost = tally.acknowledged - stored
    report(
        "disk full",
        filler_bytes=filled,
        answered_while_full=while_full.kinds,
        readyz_while_full=ready_status,
        answered_after_space_returned=after.kinds,
        first_200_after_space_returned_seconds=round(first_200_after, 3),
        acknowledged=len(tally.acknowledged),
        stored=len(stored),
        lost=len(lost),
        integrity=check,
    )
    assert while_full.kinds == {"503 storage_error": len(while_full.answers)}
    assert all(a.retry_after == str(DEFAULTS.retry_after) for a in while_full.answers)
    assert ready_status == 503
    assert first_200_after < 1.0
    assert all(a.status == 200 for a in after.answers if a.started > freed_at + 1.0)
    assert not lost, sorted(lost)[:10]
    assert check == "ok"


def test_the_load_tally_names_error_bodies_of_any_shape() -> None:
    # A proxy in front, or aiohttp itself, can answer in plain text; the load must count it, not crash.
    assert error_code(b'{"error": "queue_full", "detail": "..."}') == "queue_full"
    assert error_code(b"400: Bad Request") == "not_json"
    assert error_code(b"[1]") == "not_an_error_object"
