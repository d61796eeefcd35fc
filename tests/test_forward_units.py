"""Forwarding in the app from the factory and in pieces: the schedule, signatures, the outbox's SQL, the
read API, replays and purge."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from commands import forward as forward_command
from commands import purge
from forwarding import dispatcher
from forwarding.schedule import nominal_delay, parse_retry_after, retry_delay
from forwarding.signing import signature, webhook_headers
from plumbing.destinations import Destination
from plumbing.exits import CommandFailed
from plumbing.settings import Settings
from server import create_app
from storage import outbox as forwarding
from storage.database import Database
from storage.records import utc_text
from tests.forward_helpers import new_secret
from tests.support import ClientFactory, both_backends, execute, rows, sample

DEFAULT = Destination(name="x", command=("true",))


def test_the_default_schedule_spans_more_than_a_day_even_at_its_shortest() -> None:
    gaps = [nominal_delay(n, DEFAULT.backoff_base, DEFAULT.backoff_cap) for n in range(1, DEFAULT.max_attempts)]
    assert gaps[:4] == [5, 10, 20, 40]
    assert max(gaps) == 6 * 3600
    assert sum(gaps) / 2 > 86400  # every jittered wait is at least half its nominal delay
    rng = random.Random(7)
    for failures in range(1, 30):
        nominal = nominal_delay(failures, 1, 100)
        assert nominal / 2 <= retry_delay(failures, 1, 100, rng) <= nominal


def test_retry_after_takes_seconds_or_a_date_and_is_bounded() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Tue, 01 Dec 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("99999999") == 86400.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_signatures_verify_with_the_standardwebhooks_package() -> None:
    secret = new_secret()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    body = b'{"call": {"call_id": "c"}}'
    headers = webhook_headers(key, "msg_1", int(datetime.now(UTC).timestamp()), body)
    assert Webhook(secret).verify(body, headers) == {"call": {"call_id": "c"}}
    assert signature(key, "msg_1", 1, body) != signature(key, "msg_2", 1, body)
    assert webhook_headers(b"", "msg_1", 1, body) == {"webhook-id": "msg_1", "webhook-timestamp": "1"}


def test_filters_choose_destinations() -> None:
    only = Destination(name="a", command=("true",), filter=(("intention", ("A", "B")), ("workflow_id", ("w",))))
    assert only.matches({"intention": "A", "workflow_id": "w"})
    assert not only.matches({"intention": "C", "workflow_id": "w"})
    assert not only.matches({"intention": None, "workflow_id": "w"})
    assert DEFAULT.matches({"intention": None})


@pytest.fixture
def forward_settings(settings: Settings) -> Settings:
    destinations = (
        Destination(name="all", command=("true",)),
        Destination(name="only-a", command=("true",), filter=(("intention", ("A",)),)),
    )
    return dataclasses.replace(settings, forward=destinations)


async def store(settings: Settings, *pushes: dict[str, Any]) -> None:
    """Through the real writer, without a dispatcher: the jobs stay pending."""
    from handlers.payload import decode, to_record
    from storage.records import utc_now

    database = Database(settings)
    await database.open_writer()
    try:
        for push in pushes:
            body = orjson.dumps(push)
            await database.writer.store(to_record(body, decode(body), utc_now()), wait=True, size=0, commit_within=5)
    finally:
        await database.close(5)


@both_backends
async def test_jobs_are_written_with_new_calls_and_versions_only(forward_settings: Settings) -> None:
    await store(
        forward_settings,
        sample(call_id="1", intention="A"),
        sample(call_id="1", intention="A"),  # the sender's retry: no job
        sample(call_id="1", intention="B"),  # a new version: a job for "all" only (the filter sees B)
        sample(call_id="2", intention="B"),
    )
    found = rows(
        forward_settings.db_path,
        "SELECT p.call_id, j.destination, j.version, j.state, j.idempotency_key FROM forward_jobs AS j"
        " JOIN pushes AS p ON p.seq = j.push_seq ORDER BY j.id",
    )
    assert [tuple(r)[:4] for r in found] == [
        ("1", "all", 0, "pending"),
        ("1", "only-a", 0, "pending"),
        ("1", "all", 1, "pending"),
        ("2", "all", 0, "pending"),
    ]
    assert len({r["idempotency_key"] for r in found}) == 4


@both_backends
async def test_deliveries_api_filters_and_pages(make_client: ClientFactory, forward_settings: Settings) -> None:
    await store(forward_settings, *(sample(call_id=str(n), intention="A") for n in range(3)))
    client = await make_client()  # no dispatcher: the settings of this app forward nothing

    async def page(**params: Any) -> dict[str, Any]:
        response = await client.get("/api/deliveries", params=params)
        assert response.status == 200, await response.text()
        return await response.json()  # type: ignore[no-any-return]

    everything = await page()
    assert len(everything["items"]) == 6
    item = everything["items"][0]
    assert set(item) == set(forwarding.JOB_COLUMNS)
    assert item["state"] == "pending"
    assert item["next_attempt_at"].endswith("Z")
    first = await page(limit=4)
    rest = await page(after=first["next_after"])
    assert [i["id"] for i in first["items"] + rest["items"]] == [i["id"] for i in everything["items"]]
    assert {i["destination"] for i in (await page(destination="only-a"))["items"]} == {"only-a"}
    assert [i["call_id"] for i in (await page(call_id="1"))["items"]] == ["1", "1"]
    assert (await page(state="dead"))["items"] == []
    bad = await client.get("/api/deliveries", params={"state": "lost"})
    assert bad.status == 400
    assert (await bad.json())["detail"] == "state must be one of pending, delivered, dead, not 'lost'"


@both_backends
async def test_replay_by_call_and_by_time_and_dead_only(forward_settings: Settings, db_path: Path) -> None:
    await store(forward_settings, *(sample(call_id=str(n), intention="A") for n in range(4)))
    execute(db_path, "UPDATE forward_jobs SET state = 'dead', attempts = 21, next_attempt_at = 0")
    execute(
        db_path,
        "UPDATE forward_jobs SET state = 'delivered', created_at = '2020-01-01T00:00:00.000Z'"
        " WHERE push_seq = (SELECT seq FROM pushes WHERE call_id = '3')",
    )
    database = Database(forward_settings)
    assert await forward_command.replay(database, forwarding.Selection(call_id="0")) == 2
    assert await forward_command.replay(database, forwarding.Selection(until="2021-01-01T00:00:00.000Z")) == 2
    assert await forward_command.replay(database, forwarding.Selection(dead=True, destination="all")) == 2
    states = rows(
        db_path,
        "SELECT p.call_id, j.destination, j.state, j.attempts FROM forward_jobs AS j"
        " JOIN pushes AS p ON p.seq = j.push_seq ORDER BY p.call_id, j.destination",
    )
    assert [tuple(r) for r in states] == [
        ("0", "all", "pending", 0),
        ("0", "only-a", "pending", 0),
        ("1", "all", "pending", 0),
        ("1", "only-a", "dead", 21),
        ("2", "all", "pending", 0),
        ("2", "only-a", "dead", 21),
        ("3", "all", "pending", 0),
        ("3", "only-a", "pending", 0),
    ]
    with pytest.raises(CommandFailed, match="replay needs"):
        forward_command.selection(
            argparse.Namespace(action="replay", call_id=None, since=None, until=None, dead=False, destination=None)
        )


@both_backends
async def test_purge_takes_the_jobs_and_attempts_of_what_it_deletes(forward_settings: Settings, db_path: Path) -> None:
    await store(forward_settings, sample(call_id="old", intention="A"), sample(call_id="new", intention="A"))
    old = utc_text(datetime.now(UTC) - timedelta(days=100))
    execute(db_path, "UPDATE pushes SET first_received_at = ? WHERE call_id = 'old'", (old,))
    execute(
        db_path,
        "INSERT INTO forward_attempts (job_id, attempted_at, status, seconds) SELECT id, ?, 500, 0.1 FROM forward_jobs",
        (old,),
    )
    removed = await purge._run(Database(forward_settings), utc_text(datetime.now(UTC) - timedelta(days=90)), False)
    assert removed.pushes == 1
    assert rows(db_path, "SELECT count(*) FROM forward_jobs")[0][0] == 2
    assert rows(db_path, "SELECT count(*) FROM forward_attempts")[0][0] == 2


def test_status_lists_configured_destinations_with_nothing_yet(forward_settings: Settings) -> None:
    shown = forward_command.render([], forward_settings, datetime.now(UTC))
    assert "all" in shown
    assert "only-a" in shown


async def test_an_app_with_destinations_starts_and_stops(forward_settings: Settings, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(forward_settings))
    response = await client.post("/push", data=orjson.dumps(sample(call_id="s", intention="A")))
    assert response.status == 200
    for _ in range(100):
        if rows(forward_settings.db_path, "SELECT count(*) FROM forward_jobs WHERE state = 'delivered'")[0][0] == 2:
            break
        await asyncio.sleep(0.05)
    assert rows(forward_settings.db_path, "SELECT count(*) FROM forward_jobs WHERE state = 'delivered'")[0][0] == 2
    metrics = await (await client.get("/metrics")).text()
    assert 'airudder_receiver_forward_attempts_total{destination="all",outcome="delivered"} 1.0' in metrics
    assert 'airudder_receiver_forward_attempt_seconds_count{destination="only-a"} 1.0' in metrics


class _QueueOf:
    """A stand-in writer that only reports how many records wait for it."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


class _Quiet:
    def observe_attempt(self, destination: str, outcome: str, seconds: float) -> None:
        pass

    def observe_backlog(self, backlogs: dict[str, forwarding.Backlog]) -> None:
        pass


async def test_no_delivery_starts_while_pushes_wait_for_the_writer(forward_settings: Settings) -> None:
    await store(forward_settings, sample(call_id="q", intention="A"))
    database = Database(forward_settings)
    writer = _QueueOf(dispatcher.BUSY_QUEUE + 1)
    jobs = await database.open_outbox()
    waiting = dispatcher.Dispatcher(forward_settings.forward, jobs, writer, _Quiet())  # type: ignore[arg-type]
    lane = waiting._lanes[0]
    try:
        assert await waiting._fill(lane) == dispatcher.BUSY_WAIT
        assert not lane.sending
        writer.depth = 0
        await waiting._fill(lane)
        assert len(lane.sending) == 1
    finally:
        await waiting.close(grace=0)
