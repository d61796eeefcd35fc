"""GET /api/pushes: typed columns, filters, keyset pages, and a feed that loses nothing under writes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from storage.queries import PUSH_COLUMNS
from tests.support import TYPED, ClientFactory, both_backends, execute, get_json, post_push, sample

pytestmark = both_backends


async def test_sample_comes_back_as_typed_columns(make_client: ClientFactory) -> None:
    client = await make_client()
    await post_push(client, sample())
    page = await get_json(client, "/api/pushes")
    (item,) = page["items"]
    assert tuple(item) == PUSH_COLUMNS
    assert {name: item[name] for name in TYPED} == TYPED
    assert item["seq"] == 1
    assert item["deliveries"] == 1
    assert item["warnings"] is None
    assert page["next_after"] == 1
    # Caught up: the page is empty and its cursor is the one given, to pass back as it is.
    assert await get_json(client, "/api/pushes", after=1) == {"items": [], "next_after": 1}
    assert await get_json(client, "/api/pushes", after=5, intention="Z") == {"items": [], "next_after": 5}


async def test_warnings_are_a_list(make_client: ClientFactory) -> None:
    client = await make_client()
    await post_push(client, sample(call_id="odd", hangup_type="Unplugged"))
    (item,) = (await get_json(client, "/api/pushes"))["items"]
    assert item["warnings"] == ["call.hangup_type has an undocumented value 'Unplugged'"]


async def test_filters_match_exactly(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    for n in range(6):
        push = sample(call_id=f"c{n}", intention="AB"[n % 2], task_id=f"t{n % 3}")
        push["callee"]["case_id"] = f"case-{n}"
        push["callee"]["callee_number"] = f"+1555000{n}"
        if n == 5:
            push["workflow_id"], push["node_id"] = "other-workflow", "other-node"
            push["workflow_name"], push["node_name"] = "Renewals", "Ask again"
        await post_push(client, push)

    async def call_ids(**params: Any) -> list[str]:
        return [item["call_id"] for item in (await get_json(client, "/api/pushes", **params))["items"]]

    assert await call_ids(intention="A") == ["c0", "c2", "c4"]
    assert await call_ids(intention="B", task_id="t2") == ["c5"]
    assert await call_ids(workflow_id="other-workflow") == ["c5"]
    assert await call_ids(node_id=sample()["node_id"], intention="B") == ["c1", "c3"]
    assert await call_ids(case_id="case-3") == ["c3"]
    assert await call_ids(callee_number="+15550004") == ["c4"]
    assert await call_ids(call_id="c2") == ["c2"]
    assert await call_ids(intention="Z") == []
    assert await call_ids(workflow_name="Renewals") == ["c5"]
    assert await call_ids(node_name=sample()["node_name"], intention="A") == ["c0", "c2", "c4"]
    assert await call_ids(workflow_name="renewals") == []  # exact, as the ids


async def test_since_and_until_bound_the_received_time(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client()
    for n in range(4):
        await post_push(client, sample(call_id=f"d{n}"))
    for n, day in enumerate(("2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23")):
        execute(db_path, "UPDATE pushes SET first_received_at = ? WHERE call_id = ?", (f"{day}T23:30:00.000Z", f"d{n}"))

    async def call_ids(**params: Any) -> list[str]:
        return [item["call_id"] for item in (await get_json(client, "/api/pushes", **params))["items"]]

    assert await call_ids(since="2026-11-21", until="2026-11-23") == ["d1", "d2"]
    assert await call_ids(since="2026-11-22T23:30:00Z") == ["d2", "d3"]
    assert await call_ids(until="2026-11-21T23:30:00.001Z") == ["d0", "d1"]
    # A window that holds no time holds no push (OpenAPI cannot say that one parameter bounds another).
    assert await call_ids(since="2026-11-22", until="2026-11-22") == []
    assert await call_ids(since="2026-11-24", until="2026-11-20") == []
    # An offset is converted to UTC: 01:00+02:00 is 23:00Z the day before.
    assert await call_ids(since="2026-11-22T01:00:00+02:00", until="2026-11-22T00:00:00+00:00") == ["d1"]


async def test_pages_follow_next_after(make_client: ClientFactory) -> None:
    client = await make_client()
    for n in range(7):
        await post_push(client, sample(call_id=f"p{n}"))
    seen: list[int] = []
    after = 0
    while True:
        page = await get_json(client, "/api/pushes", after=after, limit=3)
        if not page["items"]:
            assert page["next_after"] == after
            break
        assert len(page["items"]) <= 3
        seen += [item["seq"] for item in page["items"]]
        after = page["next_after"]
    assert seen == [1, 2, 3, 4, 5, 6, 7]


async def test_newest_first_pages_go_back_with_next_before(make_client: ClientFactory) -> None:
    client = await make_client()
    for n in range(7):
        await post_push(client, sample(call_id=f"n{n}", intention="A" if n % 2 else "B"))
    seen: list[int] = []
    page = await get_json(client, "/api/pushes", order="newest", limit=3)
    while page["items"]:
        assert "next_after" not in page
        seen += [item["seq"] for item in page["items"]]
        page = await get_json(client, "/api/pushes", order="newest", limit=3, before=page["next_before"])
    assert page["next_before"] is None
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    filtered = await get_json(client, "/api/pushes", order="newest", intention="A", before=6, after=1)
    assert [item["seq"] for item in filtered["items"]] == [4, 2]
    oldest_first = await get_json(client, "/api/pushes", before=4)
    assert [item["seq"] for item in oldest_first["items"]] == [1, 2, 3]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"order": "latest"}, "order must be oldest or newest"),
        ({"before": "0"}, "before must be between 1 and 9223372036854775807"),
        ({"after": "9223372036854775808"}, "after must be between 0 and 9223372036854775807"),
        ({"limit": "0"}, "limit must be between 1 and 1000"),
        ({"limit": "1001"}, "limit must be between 1 and 1000"),
        ({"limit": "ten"}, "limit must be an integer"),
        ({"after": "-1"}, "after must be between 0 and"),
        ({"after": "1.5"}, "after must be an integer"),
        ({"since": "yesterday"}, "since must be an ISO 8601 time"),
        ({"until": "2026-13-01"}, "until must be an ISO 8601 time"),
        # An unescaped '+02:00' arrives as ' 02:00'.
        ({"since": "2026-11-24T19:47:09 02:00"}, "write it as %2B (e.g. since=2026-11-24T19:47:09%2B02:00)"),
        ({"until": "2026-11-24 19:47 0530"}, "or give the time in UTC with Z"),
        ({"intention": ""}, "intention must not be empty"),
        ({"workflow": "w"}, "unknown parameter 'workflow'"),
    ],
)
async def test_bad_parameters_are_400(make_client: ClientFactory, params: dict[str, str], needle: str) -> None:
    client = await make_client()
    body = await get_json(client, "/api/pushes", status=400, **params)
    assert body["error"] == "invalid_parameter"
    assert needle in body["detail"]


async def test_a_repeated_parameter_is_400(make_client: ClientFactory) -> None:
    client = await make_client()
    response = await client.get("/api/pushes?limit=1&limit=2")
    assert response.status == 400
    assert await response.json() == {"error": "invalid_parameter", "detail": "limit is given more than once"}


async def test_a_feed_under_concurrent_writes_sees_every_push_once(make_client: ClientFactory) -> None:
    """Writers post in parallel while a consumer follows next_after with small pages."""
    client = await make_client(max_batch=7)
    writers, per_writer = 4, 60
    done = asyncio.Event()

    async def write(w: int) -> None:
        for n in range(per_writer):
            await post_push(client, sample(call_id=f"w{w}-{n}"))
            if n % 10 == 0:
                await asyncio.sleep(0)

    pages_during_writes = 0

    async def consume() -> list[dict[str, Any]]:
        nonlocal pages_during_writes
        seen: list[dict[str, Any]] = []
        after = 0
        while True:
            finished = done.is_set()  # read before the page, so the last page is taken after the writes
            page = await get_json(client, "/api/pushes", after=after, limit=5)
            seen += page["items"]
            pages_during_writes += bool(page["items"]) and not finished
            if page["items"]:
                after = page["next_after"]
            elif finished:
                return seen
            else:
                await asyncio.sleep(0.005)

    consumer = asyncio.create_task(consume())
    await asyncio.gather(*(write(w) for w in range(writers)))
    done.set()
    seen = await asyncio.wait_for(consumer, 30)
    assert pages_during_writes > 5  # the feed really ran while pushes were arriving
    seqs = [item["seq"] for item in seen]
    assert seqs == sorted(seqs)
    assert len(seqs) == len(set(seqs)) == writers * per_writer
    assert {item["call_id"] for item in seen} == {f"w{w}-{n}" for w in range(writers) for n in range(per_writer)}
