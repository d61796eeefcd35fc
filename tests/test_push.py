"""POST /push on the real app with a real database, SQLite and PostgreSQL: what is stored, what is answered."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from storage.queries import raw_body
from tests.support import SAMPLE_BYTES, TYPED, ClientFactory, both_backends, rows, sample

pytestmark = both_backends


async def test_push_sample_is_stored_with_typed_columns(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    response = await client.post("/push", data=SAMPLE_BYTES, headers={"Content-Type": "application/json"})
    assert response.status == 200
    assert await response.read() == b"{}"
    stored = rows(db_path, "SELECT * FROM pushes")
    assert len(stored) == 1
    row = stored[0]
    assert {name: row[name] for name in TYPED} == TYPED
    assert row["deliveries"] == 1
    assert row["warnings"] is None
    assert row["body"] == SAMPLE_BYTES.decode()
    assert row["first_received_at"] == row["last_received_at"]
    assert row["first_received_at"].endswith("Z")


async def test_push_duplicate_increments_deliveries(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    first = await client.post("/push", data=SAMPLE_BYTES)
    second = await client.post("/push", data=SAMPLE_BYTES)
    assert (first.status, second.status) == (200, 200)
    assert await second.read() == b"{}"
    (row,) = rows(db_path, "SELECT * FROM pushes")
    assert row["deliveries"] == 2
    assert row["last_received_at"] >= row["first_received_at"]
    assert row["body"] == SAMPLE_BYTES.decode()
    assert rows(db_path, "SELECT count(*) FROM push_versions")[0][0] == 0


async def test_push_duplicate_with_different_body_keeps_a_version(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    changed = orjson.dumps(sample(intention="A"))
    for body in (SAMPLE_BYTES, changed, changed):
        assert (await client.post("/push", data=body)).status == 200
    (row,) = rows(db_path, "SELECT seq, deliveries, intention, body FROM pushes")
    assert row["deliveries"] == 3
    assert row["intention"] == "A"  # the typed columns follow the latest version...
    assert row["body"] == SAMPLE_BYTES.decode()  # ...and the first body stays the row's body
    versions = rows(db_path, "SELECT push_seq, body FROM push_versions")
    assert [(v["push_seq"], v["body"]) for v in versions] == [(row["seq"], changed.decode())]


async def test_push_duplicates_inside_one_batch_are_counted(make_client: ClientFactory, db_path: Path) -> None:
    import asyncio

    client = await make_client()
    responses = await asyncio.gather(*(client.post("/push", data=SAMPLE_BYTES) for _ in range(20)))
    assert [r.status for r in responses] == [200] * 20
    (row,) = rows(db_path, "SELECT deliveries FROM pushes")
    assert row["deliveries"] == 20


async def test_push_integer_identity_is_normalised_to_text(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    push = sample(call_id=12345)
    push["workflow_id"], push["node_id"] = 7, 8
    assert (await client.post("/push", data=orjson.dumps(push))).status == 200
    (row,) = rows(db_path, "SELECT workflow_id, node_id, call_id FROM pushes")
    assert tuple(row) == ("7", "8", "12345")  # strings as stored: an integer would compare unequal


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_push_accepts_any_content_type(
    make_client: ClientFactory, db_path: Path, content_type: str | None
) -> None:
    client = await make_client()
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/push", data=SAMPLE_BYTES, headers=headers)
    assert response.status == 200
    assert len(rows(db_path, "SELECT seq FROM pushes")) == 1


async def test_push_deviations_are_warnings_not_rejections(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    push = sample(hangup_type="ByAlien", ring_type="ringing", call_times="two")
    del push["callee"]["case_id"]
    del push["call"]["asr_result"]
    assert (await client.post("/push", data=orjson.dumps(push))).status == 200
    (row,) = rows(db_path, "SELECT hangup_type, ring_type, case_id, warnings FROM pushes")
    assert (row["hangup_type"], row["ring_type"], row["case_id"]) == ("ByAlien", "ringing", None)
    assert sorted(orjson.loads(row["warnings"])) == [
        "call.asr_result is missing",
        "call.call_times should be an integer, not a string",
        "call.hangup_type has an undocumented value 'ByAlien'",
        "call.ring_type has an undocumented value 'ringing'",
        "callee.case_id is missing",
    ]


async def test_push_null_ring_type_is_documented_and_not_a_warning(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    assert (await client.post("/push", data=orjson.dumps(sample(ring_type=None)))).status == 200
    (row,) = rows(db_path, "SELECT ring_type, warnings FROM pushes")
    assert (row["ring_type"], row["warnings"]) == (None, None)


def _without(name: str) -> dict[str, Any]:
    push = sample()
    del push[name]
    return push


REJECTED = [
    pytest.param(b"", 400, "invalid_json", "the body is empty", id="empty"),
    pytest.param(b'{"workflow_id": "w", ', 400, "invalid_json", "not valid JSON", id="truncated"),
    pytest.param(b"\xff\xfe{}", 400, "invalid_json", "not valid JSON", id="invalid-utf8"),
    pytest.param(b'{"a": NaN}', 400, "invalid_json", "not valid JSON", id="nan"),
    pytest.param(b"[1, 2]", 400, "not_an_object", "an array", id="array"),
    pytest.param(b'"push"', 400, "not_an_object", "a string", id="string"),
    pytest.param(b"null", 400, "not_an_object", "null", id="null"),
    pytest.param(orjson.dumps(_without("workflow_id")), 422, "missing_field", "workflow_id is missing", id="no-wf"),
    pytest.param(orjson.dumps(_without("node_id")), 422, "missing_field", "node_id is missing", id="no-node"),
    pytest.param(orjson.dumps(_without("call")), 422, "missing_field", "call is missing", id="no-call"),
    pytest.param(
        orjson.dumps({**sample(), "call": []}), 422, "invalid_field", "call must be an object", id="call-list"
    ),
    pytest.param(orjson.dumps(sample(call_id="")), 422, "invalid_field", "call.call_id is empty", id="empty-call-id"),
    pytest.param(orjson.dumps(sample(call_id="  ")), 422, "invalid_field", "call.call_id is empty", id="blank-call-id"),
    pytest.param(orjson.dumps(sample(call_id=None)), 422, "invalid_field", "not null", id="null-call-id"),
    pytest.param(orjson.dumps(sample(call_id=True)), 422, "invalid_field", "not a boolean", id="bool-call-id"),
    pytest.param(orjson.dumps(sample(call_id=1.5)), 422, "invalid_field", "not a number", id="float-call-id"),
    pytest.param(orjson.dumps({**sample(), "node_id": {"id": 1}}), 422, "invalid_field", "node_id must be", id="obj"),
]


@pytest.mark.parametrize(("body", "status", "code", "detail"), REJECTED)
async def test_push_rejection_is_answered_and_kept(
    make_client: ClientFactory, db_path: Path, backend: str, body: bytes, status: int, code: str, detail: str
) -> None:
    client = await make_client()
    response = await client.post("/push", data=body, headers={"User-Agent": "Airudder"})
    assert response.status == status
    answer = await response.json()
    assert answer["error"] == code
    assert detail in answer["detail"]
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 0
    (reject,) = rows(db_path, "SELECT * FROM rejects")
    assert (reject["reason"], reject["detail"], reject["path"]) == (code, answer["detail"], "/push")
    if backend == "sqlite":  # text as text, so that sqlite3 and Datasette show it; other bytes as they came
        stored = (reject["body"], rows(db_path, "SELECT typeof(body) FROM rejects")[0][0])
        assert stored == ((body, "blob") if body.startswith(b"\xff") else (body.decode(), "text"))
    else:  # one type per column: every body as bytea (docs/data.md)
        assert reject["body"] == body
    assert reject["remote"] == "127.0.0.1"
    assert orjson.loads(reject["headers"])["User-Agent"] == "Airudder"


async def test_a_reject_that_cannot_be_kept_is_answered_503_until_it_can(
    make_client: ClientFactory, db_path: Path, hold_lock: Callable[[], sqlite3.Connection]
) -> None:
    client = await make_client()
    lock = hold_lock()
    refused = await client.post("/push", data=b"not json")
    assert refused.status == 503  # a 400 would end the sender's retries with the body stored nowhere
    assert refused.headers["Retry-After"] == "5"
    assert (await refused.json())["error"] == "storage_error"
    lock.rollback()
    retried = await client.post("/push", data=b"not json")
    assert retried.status == 400
    kept = [(row["reason"], raw_body(row["body"])) for row in rows(db_path, "SELECT reason, body FROM rejects")]
    # The retry's reject is kept. On PostgreSQL the first one's statement may still commit after its 503 (the
    # client gave up waiting; the server's cancel can arrive after the lock is free), as a push answered 503
    # may: then it is kept twice, never lost.
    assert kept in ([("invalid_json", b"not json")], [("invalid_json", b"not json")] * 2)


async def test_the_queue_is_bounded_by_bytes(
    make_client: ClientFactory, db_path: Path, hold_lock: Callable[[], sqlite3.Connection]
) -> None:
    budget = 4 * 4096
    client = await make_client(ack="queued", busy_timeout_ms=3000, max_body_bytes=4096, queue_max_bytes=budget)
    bodies = [orjson.dumps(sample(call_id=f"queued-{n}")) for n in range(12)]
    lock = hold_lock()  # the writer waits on its first batch, so the rest stays queued
    answers = []
    for body in bodies:
        response = await client.post("/push", data=body)
        answers.append((response.status, None if response.status == 200 else (await response.json())["error"]))
    taken = answers.count((200, None))
    # What the queue holds fits the budget; the writer's own batch (at most the first push) is out of it.
    assert 1 <= taken <= budget // len(bodies[0]) + 1, answers
    assert answers[taken:] == [(503, "queue_full")] * (len(bodies) - taken)
    lock.rollback()
    async with asyncio.timeout(10):
        while rows(db_path, "SELECT count(*) FROM pushes")[0][0] < taken:
            await asyncio.sleep(0.05)
    assert (await client.post("/push", data=bodies[-1])).status == 200  # room again once written


async def test_push_too_large_is_413(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client(max_body_bytes=4096)
    response = await client.post("/push", data=b"x" * 4097)
    assert response.status == 413
    assert (await response.json())["error"] == "body_too_large"
    assert rows(db_path, "SELECT reason, body FROM rejects")[0][:] == ("body_too_large", None)


async def test_push_chunked_body_over_limit_is_413(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client(max_body_bytes=4096)

    async def chunks() -> Any:
        for _ in range(10):
            yield b"y" * 1000

    response = await client.post("/push", data=chunks())
    assert response.status == 413
    assert "more than the limit of 4096" in (await response.json())["detail"]


async def test_push_body_at_the_limit_is_read(make_client: ClientFactory, db_path: Path) -> None:
    body = orjson.dumps(sample())
    client = await make_client(max_body_bytes=len(body))
    assert (await client.post("/push", data=body)).status == 200


async def test_unknown_path_and_method_get_json_errors(make_client: ClientFactory) -> None:
    client = await make_client()
    missing = await client.get("/nothing-here")
    assert (missing.status, (await missing.json())["error"]) == (404, "not_found")
    wrong_method = await client.get("/push")
    assert (wrong_method.status, await wrong_method.json()) == (
        405,
        {"error": "method_not_allowed", "detail": "GET is not allowed at this path; use POST"},
    )
    assert wrong_method.headers["Allow"] == "POST"
    # Every 405 names what the path takes, as RFC 9110 requires.
    read_only = await client.post("/api/pushes")
    assert (read_only.status, read_only.headers["Allow"]) == (405, "GET,HEAD")
    assert (await read_only.json())["detail"] == "POST is not allowed at this path; use GET or HEAD"


async def test_push_token_guards_the_path(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client(push_token="s3cret-token-0123")
    assert (await client.post("/push", data=SAMPLE_BYTES)).status == 404
    assert (await client.post("/push/wrong", data=SAMPLE_BYTES)).status == 404
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 0
    assert (await client.post("/push/s3cret-token-0123", data=SAMPLE_BYTES)).status == 200
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 1


async def test_a_nul_character_in_a_field_is_stored_and_found(
    make_client: ClientFactory, db_path: Path, backend: str
) -> None:
    """JSON may carry \\u0000 in a string; PostgreSQL's text cannot, so there it is kept as U+FFFD (docs/data.md)."""
    client = await make_client()
    push = sample(call_id="a\u0000b", intention="x\u0000")
    assert (await client.post("/push", data=orjson.dumps(push))).status == 200
    assert (await client.post("/push", data=orjson.dumps(push))).status == 200  # the same call, found again
    stored = "\ufffd" if backend == "postgresql" else "\u0000"
    (row,) = rows(db_path, "SELECT call_id, intention, deliveries, body FROM pushes")
    assert (row["call_id"], row["intention"], row["deliveries"]) == (f"a{stored}b", f"x{stored}", 2)
    assert orjson.loads(row["body"]) == push  # the body is kept as received
    listed = await client.get("/api/pushes", params={"call_id": "a\u0000b"})
    assert [item["deliveries"] for item in (await listed.json())["items"]] == [2]
