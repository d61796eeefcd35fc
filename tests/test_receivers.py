"""Several receiver processes on one PostgreSQL database: dedupe, kills, an outage and the feed.

Each test prints its figures (``pytest -s tests/test_receivers.py`` shows them).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from plumbing.settings import DATABASE_URL_ENV, Settings
from tests.load import REQUEST_TIMEOUT, Tally, background_load, post_push, push_body
from tests.pg_cluster import PASSWORD, PgCluster
from tests.process import ServerProcess, run_server_to_exit, running_server, two_receivers
from tests.support import free_port, get, next_event, report, rows, sample, stored_call_ids

pytestmark = pytest.mark.failure

DEFAULTS = Settings()


def assert_password_never_logged(*servers: ServerProcess) -> None:
    for server in servers:
        assert PASSWORD not in server.log()


async def test_two_receivers_share_6000_shuffled_deliveries_of_1000_calls(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    calls, deliveries, differing = 1000, 6, 100
    url = pg_cluster.new_database()
    base = {n: orjson.dumps(sample(call_id=f"c{n}")) for n in range(calls)}
    # One delivery of each of the first ``differing`` calls carries another body: one version each.
    variant = {n: orjson.dumps(sample(call_id=f"c{n}", intention="B")) for n in range(differing)}
    plan = [
        (n, variant[n] if n in variant and k == deliveries - 1 else base[n])
        for n in range(calls)
        for k in range(deliveries)
    ]
    random.shuffle(plan)
    tally = Tally()
    with two_receivers(tmp_path, url) as servers:
        targets = [f"{server.url}/push" for server in servers]
        work = iter(enumerate(plan))
        started = time.monotonic()

        async def worker(session: aiohttp.ClientSession) -> None:
            for position, (n, body) in work:
                await post_push(session, targets[position % 2], f"c{n}", body, tally)

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
            await asyncio.gather(*(worker(session) for _ in range(32)))
        seconds = time.monotonic() - started
        for server in servers:
            assert server.stop() == 0
    assert_password_never_logged(*servers)
    count, total = rows(url, "SELECT count(*), sum(deliveries) FROM pushes")[0]
    versions = rows(
        url,
        "SELECT p.call_id, p.body, v.body AS version FROM push_versions AS v JOIN pushes AS p ON p.seq = v.push_seq",
    )
    report(
        "two receivers, duplicate storm",
        requests=len(plan),
        answers=tally.kinds,
        rows=count,
        deliveries=total,
        versions=len(versions),
        seconds=round(seconds, 1),
        per_second=round(len(plan) / seconds),
    )
    assert tally.statuses == {200: calls * deliveries}
    assert (count, total) == (calls, calls * deliveries)
    assert rows(url, "SELECT count(*) FROM pushes WHERE deliveries != ?", (deliveries,))[0][0] == 0
    # Exactly the differing bodies: one version per such call, the body its first delivery did not carry.
    assert sorted(row["call_id"] for row in versions) == sorted(f"c{n}" for n in variant)
    for row in versions:
        n = int(row["call_id"][1:])
        assert {row["body"].encode(), row["version"].encode()} == {base[n], variant[n]}


async def test_kill_9_of_one_receiver_loses_nothing_it_acknowledged_and_the_other_answers(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.new_database()
    tally = Tally()
    with two_receivers(tmp_path, url) as (doomed, survivor):
        async with (
            background_load(f"{doomed.url}/push", tally, prefix="doomed"),
            background_load(f"{survivor.url}/push", tally, prefix="survivor"),
        ):
            await asyncio.sleep(1.0)
            killed_at = time.monotonic()
            assert await asyncio.to_thread(doomed.stop, signal.SIGKILL) == -signal.SIGKILL
            await asyncio.sleep(1.5)
        assert survivor.proc.poll() is None
        assert survivor.stop() == 0
    stored = stored_call_ids(url)
    lost = tally.acknowledged - stored
    doomed_200 = [a for a in tally.answers if a.call_id.startswith("doomed") and a.status == 200]
    survivor_after = [a for a in tally.answers if a.call_id.startswith("survivor") and a.started > killed_at]
    report(
        "kill -9 of one of two receivers",
        acknowledged_by_killed=len(doomed_200),
        survivor_answers_after_kill=Tally(survivor_after).kinds,
        acknowledged=len(tally.acknowledged),
        stored=len(stored),
        lost=len(lost),
    )
    assert not lost, sorted(lost)[:10]
    assert doomed_200, "the killed receiver acknowledged nothing before its kill"
    assert survivor_after
    assert all(a.status == 200 for a in survivor_after)
    assert rows(url, "SELECT count(*) FROM pushes WHERE deliveries != 1")[0][0] == 0


def metric(page: bytes, name: str) -> float:
    """The value of an unlabelled series in a /metrics page."""
    for line in page.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


async def poll_readyz(url: str, until: float) -> list[int]:
    """/readyz statuses, every 0.2 s until ``until`` (monotonic)."""
    seen = []
    while time.monotonic() < until:
        status, _ = await asyncio.to_thread(get, f"{url}/readyz", 5.0)
        seen.append(status)
        await asyncio.sleep(0.2)
    return seen


async def test_postgresql_stopped_for_5s_is_503_with_retry_after_then_200_within_a_second(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.new_database()
    tally = Tally()
    outage = 5.0
    with two_receivers(tmp_path, url) as servers:
        async with (
            background_load(f"{servers[0].url}/push", tally, prefix="a", concurrency=8),
            background_load(f"{servers[1].url}/push", tally, prefix="b", concurrency=8),
        ):
            await asyncio.sleep(1.0)
            await asyncio.to_thread(pg_cluster.stop)
            stopped_at = time.monotonic()
            readyz_during = await poll_readyz(servers[0].url, stopped_at + outage)
            _, metrics_down = await asyncio.to_thread(get, f"{servers[0].url}/metrics", 5.0)
            restart_at = time.monotonic()
            await asyncio.to_thread(pg_cluster.start)
            back_at = time.monotonic()  # pg_ctl saw it accept connections (a little after it began to)
            await asyncio.sleep(2.0)
        readyz_after, _ = await asyncio.to_thread(get, f"{servers[1].url}/readyz", 5.0)
        _, metrics_after = await asyncio.to_thread(get, f"{servers[0].url}/metrics", 5.0)
        for server in servers:
            assert server.proc.poll() is None
            assert server.stop() == 0
    assert_password_never_logged(*servers)
    # Sent once the server was down and answered before it was started again: nothing of it can be stored.
    during = [a for a in tally.answers if a.started > stopped_at and a.started + a.seconds < restart_at]
    first_200_after = min(a.started + a.seconds for a in tally.answers if a.status == 200 and a.started > stopped_at)
    stored = stored_call_ids(url)
    lost = tally.acknowledged - stored
    report(
        "PostgreSQL stopped for 5 s",
        down_seconds=round(restart_at - stopped_at, 2),
        restart_seconds=round(back_at - restart_at, 2),
        answered_while_down=Tally(during).kinds,
        readyz_while_down=sorted(set(readyz_during)),
        first_200_after_return_seconds=round(first_200_after - back_at, 3),
        failed_connects=metric(metrics_after, "airudder_receiver_database_connect_failures_total"),
        slowest_answer_seconds=round(tally.slowest(), 2),
        acknowledged=len(tally.acknowledged),
        stored=len(stored),
        lost=len(lost),
    )
    assert during, "no request was answered while PostgreSQL was down"
    assert all(a.status == 503 and a.retry_after == str(DEFAULTS.retry_after) for a in during)
    assert tally.slowest() < REQUEST_TIMEOUT
    assert set(readyz_during[3:]) == {503}  # after the first probe second, when a cached answer may linger
    assert first_200_after - back_at < 1.0
    assert readyz_after == 200
    # Each failed connect waits longer, at most a second, on each of the receiver's connections (the writer's
    # and the one listening for pushes): a few attempts a second, not one per batch (8 connections pushing
    # as fast as they are answered made about 150 a second before).
    assert metric(metrics_down, "airudder_receiver_database_up") == 0
    assert metric(metrics_after, "airudder_receiver_database_up") == 1
    assert 1 <= metric(metrics_after, "airudder_receiver_database_connect_failures_total") <= 5 * outage
    assert not lost, sorted(lost)[:10]


async def test_a_feed_follower_sees_every_push_once_while_two_receivers_write(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.new_database()
    tally = Tally()
    seen: list[dict[str, Any]] = []

    async def follow(readers: list[str], stop: asyncio.Event) -> None:
        after, turn = 0, 0
        while True:
            stopping = stop.is_set()
            status, body = await asyncio.to_thread(get, f"{readers[turn % 2]}/api/pushes?after={after}&limit=50")
            turn += 1
            assert status == 200, body
            page = orjson.loads(body)
            seen.extend(page["items"])
            if page["next_after"] is not None:
                after = page["next_after"]
            elif stopping:
                return  # a page read after the writers stopped came back empty: the feed is drained
            else:
                await asyncio.sleep(0.01)

    with two_receivers(tmp_path, url) as servers:
        stop = asyncio.Event()
        follower = asyncio.create_task(follow([s.url for s in servers], stop))
        async with (
            background_load(f"{servers[0].url}/push", tally, prefix="a"),
            background_load(f"{servers[1].url}/push", tally, prefix="b"),
        ):
            await asyncio.sleep(3.0)
        stop.set()
        async with asyncio.timeout(30):
            await follower
        for server in servers:
            assert server.stop() == 0
    seqs = [item["seq"] for item in seen]
    call_ids = [item["call_id"] for item in seen]
    stored = rows(url, "SELECT seq, call_id FROM pushes ORDER BY seq")
    report("feed under two writers", pushes=len(stored), seen=len(seen), acknowledged=len(tally.acknowledged))
    assert seqs == sorted(set(seqs))  # increasing, so never twice
    assert call_ids == [row["call_id"] for row in stored]  # every stored push, in seq order, none skipped
    assert tally.acknowledged <= set(call_ids)


async def test_two_receivers_starting_together_migrate_once(tmp_path: Path, pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    with two_receivers(tmp_path, url) as servers:
        for server in servers:
            assert (await asyncio.to_thread(get, f"{server.url}/readyz"))[0] == 200
    steps = rows(url, "SELECT version, name FROM schema_migrations ORDER BY version")
    assert [row["version"] for row in steps] == list(range(1, len(steps) + 1))
    logs = "".join(server.log() for server in servers)
    assert logs.count("migrated: ") == 1


def test_an_unreachable_url_is_one_sentence_and_exit_2_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://receiver:{PASSWORD}@127.0.0.1:{free_port()}/pushes"
    result = run_server_to_exit(tmp_path, "--port", str(free_port()), env={DATABASE_URL_ENV: url})
    assert result.returncode == 2
    assert PASSWORD not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"cannot reach the database postgresql://receiver:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in line


def test_an_older_receiver_refuses_a_newer_schema(tmp_path: Path, pg_cluster: PgCluster) -> None:
    url = pg_cluster.new_database()
    with running_server(tmp_path, url) as server:
        assert server.stop() == 0
    rows(url, "INSERT INTO schema_migrations (version, name) VALUES (99, 'from_the_future')")
    result = run_server_to_exit(tmp_path, "--port", str(free_port()), "--db", url)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "schema version 99 is newer than this program knows" in line
    assert PASSWORD not in line


async def test_each_receivers_event_stream_tells_every_push_whichever_receiver_took_it(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.new_database()
    calls = [f"e{n}" for n in range(300)]  # more than one NOTIFY holds
    with two_receivers(tmp_path, url) as servers:
        async with aiohttp.ClientSession() as session:
            streams = [await session.get(f"{server.url}/api/events") for server in servers]
            for stream in streams:
                assert await stream.content.readline() == b"retry: 2000\n"
            tally = Tally()
            await asyncio.gather(
                *(post_push(session, f"{servers[n % 2].url}/push", c, push_body(c), tally) for n, c in enumerate(calls))
            )
            assert tally.statuses == {200: len(calls)}
            for stream in streams:
                told: list[str] = []
                async with asyncio.timeout(15):
                    while len(told) < len(calls):
                        kind, data = await next_event(stream)
                        assert kind == "pushes"
                        told.extend(item["call_id"] for item in data)  # type: ignore[attr-defined]
                assert sorted(told) == sorted(calls)
                stream.close()
        for server in servers:
            assert server.stop() == 0


async def test_sigterm_while_postgresql_is_down_exits_within_10s_and_keeps_every_acknowledged_push(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.new_database()
    tally = Tally()
    with running_server(tmp_path, url) as server:
        try:
            async with background_load(f"{server.url}/push", tally, prefix="down", concurrency=8):
                await asyncio.sleep(1.0)
                await asyncio.to_thread(pg_cluster.stop)
                await asyncio.sleep(1.0)
                signalled_at = time.monotonic()
                exit_code = await asyncio.to_thread(server.stop, signal.SIGTERM, 10.0)
                exit_seconds = time.monotonic() - signalled_at
        finally:
            await asyncio.to_thread(pg_cluster.start)
    stored = stored_call_ids(url)
    lost = tally.acknowledged - stored
    report(
        "SIGTERM while PostgreSQL is down",
        exit_code=exit_code,
        exit_seconds=round(exit_seconds, 2),
        answers=tally.kinds,
        acknowledged=len(tally.acknowledged),
        stored=len(stored),
        lost=len(lost),
    )
    assert exit_code == 0
    assert exit_seconds < 10
    assert tally.acknowledged
    assert not lost, sorted(lost)[:10]
    assert PASSWORD not in server.log()


async def test_postgresql_that_hangs_is_503_within_ack_timeout_then_200_again(
    tmp_path: Path, pg_cluster: PgCluster
) -> None:
    url = pg_cluster.new_database()
    tally = Tally()
    ack_timeout = 2.0
    hang = ack_timeout + 1.5  # so that requests are answered while it hangs
    config = tmp_path / "config.toml"
    config.write_text(f"ack_timeout = {ack_timeout}\nbusy_timeout_ms = 1000\n")
    with running_server(tmp_path, url, "--config", str(config)) as server:
        try:
            async with background_load(f"{server.url}/push", tally, prefix="hang", concurrency=8):
                await asyncio.sleep(1.0)
                pg_cluster.freeze()
                frozen_at = time.monotonic()
                await asyncio.sleep(hang)
                pg_cluster.thaw()
                thawed_at = time.monotonic()
                await asyncio.sleep(ack_timeout + 1.0)
        finally:
            pg_cluster.thaw()
        assert server.proc.poll() is None
        assert server.stop() == 0
    during = [a for a in tally.answers if a.started > frozen_at and a.started + a.seconds < thawed_at]
    first_200_after = min(a.started + a.seconds for a in tally.answers if a.status == 200 and a.started > frozen_at)
    stored = stored_call_ids(url)
    lost = tally.acknowledged - stored
    report(
        f"PostgreSQL hangs for {hang:g} s, ack_timeout {ack_timeout:g} s",
        answered_while_hung=Tally(during).kinds,
        first_200_after_thaw_seconds=round(first_200_after - thawed_at, 3),
        slowest_answer_seconds=round(tally.slowest(), 2),
        acknowledged=len(tally.acknowledged),
        stored=len(stored),
        lost=len(lost),
    )
    assert during, "nothing was answered while PostgreSQL hung"
    assert all(a.status == 503 and a.retry_after == str(DEFAULTS.retry_after) for a in during)
    assert tally.slowest() < ack_timeout + 1.0
    assert first_200_after - thawed_at < ack_timeout
    assert not lost, sorted(lost)[:10]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # libpq and asyncpg also take the password as a query parameter.
        (f"postgresql://receiver@127.0.0.1:{{port}}/pushes?password={PASSWORD}", "?password=***"),
        (f"postgresql://127.0.0.1:{{port}}/pushes?user=receiver&password={PASSWORD}&sslmode=disable", "password=***&"),
        # A port asyncpg cannot use is refused in a sentence, not a traceback (past 65535, asyncio's loop
        # raises OverflowError where uvloop's finds nothing listening).
        (f"postgresql://receiver:{PASSWORD}@127.0.0.1:notaport/pushes", "the database URL is not valid"),
        (f"postgresql://receiver:{PASSWORD}@127.0.0.1:99999/pushes", "database postgresql://receiver:***@127.0.0.1:"),
    ],
    ids=["query", "query-between", "port-not-a-number", "port-too-large"],
)
@pytest.mark.parametrize("command", [["serve"], ["stats"]], ids=" ".join)
def test_a_url_with_its_password_in_the_query_or_a_bad_port_is_one_sentence_without_the_password(
    tmp_path: Path, url: str, shown: str, command: list[str]
) -> None:
    url = url.format(port=free_port())
    extra = ["--port", str(free_port())] if command == ["serve"] else []
    result = run_server_to_exit(tmp_path, *command, *extra, env={DATABASE_URL_ENV: url})
    assert result.returncode == 2, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert shown in line
