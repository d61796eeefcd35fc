"""GET /metrics: counts match what the pushes did, in a format Prometheus parses."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import orjson
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from handlers.errors import PUSH_REJECT_CODES
from handlers.keys import WRITER
from plumbing.version import VERSION
from tests.support import SAMPLE_BYTES, TOKEN, ClientFactory, both_backends, rows, sample

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: TestClient) -> Samples:  # type: ignore[type-arg]
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


async def test_metrics_count_outcomes_rejects_and_timings(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    before = time.time()
    assert (await client.post("/push", data=SAMPLE_BYTES)).status == 200
    assert (await client.post("/push", data=SAMPLE_BYTES)).status == 200
    assert (await client.post("/push", data=orjson.dumps(sample(asr_result=[])))).status == 200  # new body
    assert (await client.post("/push", data=b"{broken")).status == 400
    assert (await client.post("/push", data=b'{"workflow_id": "w"}')).status == 422
    m = await scrape(client)
    assert m[("airudder_receiver_pushes_total", (("outcome", "new"),))] == 1
    assert m[("airudder_receiver_pushes_total", (("outcome", "duplicate"),))] == 1
    assert m[("airudder_receiver_pushes_total", (("outcome", "new_version"),))] == 1
    assert m[("airudder_receiver_pushes_rejected_total", (("reason", "invalid_json"),))] == 1
    assert m[("airudder_receiver_pushes_rejected_total", (("reason", "missing_field"),))] == 1
    assert m[("airudder_receiver_request_seconds_count", (("route", "/push"),))] == 5
    # Three pushes and two rejects went through the writer, one batch each (the client waits for each answer).
    assert m[("airudder_receiver_batch_size_count", ())] == 5
    assert m[("airudder_receiver_batch_size_sum", ())] == 5
    assert m[("airudder_receiver_commit_seconds_count", ())] == 5
    assert m[("airudder_receiver_queue_depth", ())] == 0
    assert before <= m[("airudder_receiver_last_push_timestamp_seconds", ())] <= time.time()
    # Every page of the database is in the file or in its write-ahead log.
    (logical,) = rows(db_path, "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")[0]
    assert m[("airudder_receiver_database_bytes", ())] >= logical > 0


@both_backends
async def test_metrics_count_503s_by_cause(
    make_client: ClientFactory, hold_lock: Callable[[], sqlite3.Connection]
) -> None:
    client = await make_client(ack_timeout=0.3, busy_timeout_ms=3000)
    lock = hold_lock()
    async with asyncio.timeout(3):
        assert (await client.post("/push", data=SAMPLE_BYTES)).status == 503
    m = await scrape(client)
    assert m[("airudder_receiver_pushes_unavailable_total", (("cause", "commit_timeout"),))] == 1
    assert m[("airudder_receiver_last_push_timestamp_seconds", ())] == 0
    lock.rollback()


@both_backends
async def test_queue_depth_shows_pushes_waiting_for_a_locked_database(
    make_client: ClientFactory, hold_lock: Callable[[], sqlite3.Connection]
) -> None:
    client = await make_client(ack="queued", busy_timeout_ms=5000)
    lock = hold_lock()
    assert (await client.post("/push", data=orjson.dumps(sample(call_id="q0")))).status == 200
    async with asyncio.timeout(5):  # the writer takes q0, then waits for the lock
        while client.server.app[WRITER].depth:
            await asyncio.sleep(0.01)
    for n in range(1, 4):
        assert (await client.post("/push", data=orjson.dumps(sample(call_id=f"q{n}")))).status == 200
    assert (await scrape(client))[("airudder_receiver_queue_depth", ())] == 3
    lock.rollback()
    async with asyncio.timeout(5):
        while (await scrape(client)).get(("airudder_receiver_pushes_total", (("outcome", "new"),))) != 4:
            await asyncio.sleep(0.05)
    assert (await scrape(client))[("airudder_receiver_queue_depth", ())] == 0


async def test_openmetrics_is_offered_to_scrapers_that_ask(make_client: ClientFactory) -> None:
    client = await make_client()
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await response.text()).endswith("# EOF\n")


async def test_metrics_follow_the_read_access_rule(make_client: ClientFactory) -> None:
    open_client = await make_client()
    assert (await open_client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})).status == 401
    guarded = await make_client(api_token=TOKEN)
    refused = await guarded.get("/metrics")
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await guarded.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200


async def test_known_labels_start_at_zero_with_build_and_process_series(make_client: ClientFactory) -> None:
    client = await make_client(max_body_bytes=1024)
    m = await scrape(client)
    for outcome in ("new", "duplicate", "new_version"):
        assert m[("airudder_receiver_pushes_total", (("outcome", outcome),))] == 0
    reasons = {labels[0][1] for name, labels in m if name == "airudder_receiver_pushes_rejected_total"}
    assert reasons == set(PUSH_REJECT_CODES)
    assert all(m[("airudder_receiver_pushes_rejected_total", (("reason", r),))] == 0 for r in reasons)
    causes = {labels[0][1] for name, labels in m if name == "airudder_receiver_pushes_unavailable_total"}
    assert causes == {"queue_full", "writer_unavailable", "commit_timeout", "storage_error"}
    assert all(m[("airudder_receiver_pushes_unavailable_total", (("cause", c),))] == 0 for c in causes)
    assert m[("airudder_receiver_build_info", (("version", VERSION),))] == 1
    assert time.time() - 600 < m[("process_start_time_seconds", ())] <= time.time()
    assert m[("process_resident_memory_bytes", ())] > 0
    assert ("python_gc_objects_collected_total", (("generation", "0"),)) in m
    assert any(name == "python_info" for name, _ in m)
    # Refusals of each kind a test client can cause are counted under the known codes, adding none.
    refusals = (
        b"{broken",
        b"[]",
        b'{"workflow_id": "w"}',
        b'{"workflow_id": [], "node_id": "n", "call": {"call_id": "c"}}',
        b"x" * 2048,
    )
    for body in refusals:
        assert (await client.post("/push", data=body)).status >= 400
    after = await scrape(client)
    assert {labels[0][1] for name, labels in after if name == "airudder_receiver_pushes_rejected_total"} == reasons
    counted = {r for r in reasons if after[("airudder_receiver_pushes_rejected_total", (("reason", r),))]}
    assert counted == {"invalid_json", "not_an_object", "missing_field", "invalid_field", "body_too_large"}
