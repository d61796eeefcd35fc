"""GET /api/pushes/{key}, /api/stats, /api/rejects and /api/openapi.json."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import hypothesis
import orjson
import pytest
from hypothesis import strategies as st

from handlers.api import DELIVERY_PARAMS, PUSH_PARAMS, REJECT_PARAMS
from handlers.keys import READERS, SETTINGS
from handlers.openapi import TIME_PATTERN, document
from plumbing.settings import Settings
from server import create_app
from storage import readers
from storage.filters import parse_time
from storage.queries import PUSH_COLUMNS
from tests.support import SAMPLE_BYTES, TOKEN, ClientFactory, both_backends, get_json, post_push, rows, sample

KEY = "/".join((sample()["workflow_id"], sample()["node_id"], sample()["call"]["call_id"]))


@both_backends
async def test_one_push_has_body_metadata_and_versions(make_client: ClientFactory) -> None:
    client = await make_client()
    assert (await client.post("/push", data=SAMPLE_BYTES)).status == 200
    assert (await client.post("/push", data=SAMPLE_BYTES)).status == 200
    await post_push(client, sample(intention="F"))
    push = await get_json(client, f"/api/pushes/{KEY}")
    assert tuple(push) == (*PUSH_COLUMNS, "body", "body_version", "version_count", "forwarding")
    assert push["forwarding"] == []  # no destination is configured
    # The latest body, and how many there are; the versions endpoint pages through all of them.
    assert push["body"]["call"]["intention"] == "F"
    assert (push["body_version"], push["version_count"], push["deliveries"]) == (1, 2, 3)
    first, later = (await get_json(client, f"/api/pushes/{KEY}/versions"))["items"]
    assert (first["version"], first["body"]) == (0, orjson.loads(SAMPLE_BYTES))
    assert (later["version"], later["body"]["call"]["intention"]) == (1, "F")
    assert later["received_at"] >= first["received_at"] == push["first_received_at"]
    # The typed columns follow the latest version too (the feed, the filters and SQL read them).
    assert push["intention"] == "F"
    (listed,) = (await get_json(client, "/api/pushes", intention="F"))["items"]
    assert listed["call_id"] == push["call_id"]
    # Two more versions in one batch: the last one received wins.
    await asyncio.gather(post_push(client, sample(intention="G")), post_push(client, sample(intention="H")))
    latest = await get_json(client, f"/api/pushes/{KEY}")
    assert latest["intention"] == latest["body"]["call"]["intention"]


@both_backends
async def test_versions_and_rejects_come_in_pages_of_bounded_bytes(make_client: ClientFactory) -> None:
    client = await make_client(max_answer_bytes=64 * 1024)
    padding = "x" * 20_000  # each body about 24 kB: two fit in 64 kB, not three
    for n in range(7):
        await post_push(client, sample(intention=str(n), slots=padding))
        assert (await client.post("/push", data=b"[" + b"x" * 30_000 + b"]")).status == 400  # two in 64 kB
    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 5} if after is None else {"limit": 5, "after": after}
        page = await get_json(client, f"/api/pushes/{KEY}/versions", **params)
        pages += 1
        if not page["items"]:
            assert (page["next_after"], page["more"]) == (after, False)
            break
        assert len(page["items"]) <= 2
        seen += [item["body"]["call"]["intention"] for item in page["items"]]
        after = page["next_after"]
    assert seen == [str(n) for n in range(7)]
    assert pages == 5  # 2 + 2 + 2 + 1, and the empty page that says there is no more
    page = await get_json(client, f"/api/pushes/{KEY}/versions", after=5, limit=1)
    assert ([item["version"] for item in page["items"]], page["next_after"], page["more"]) == ([6], 6, False)
    rejects = await get_json(client, "/api/rejects", limit=1000)
    assert (len(rejects["items"]), rejects["next_after"], rejects["more"]) == (2, 2, True)
    rest = await get_json(client, "/api/rejects", after=6, limit=1000)
    assert ([item["id"] for item in rest["items"]], rest["more"]) == ([7], False)
    newest = await get_json(client, "/api/rejects", order="newest", limit=1000)
    assert ([item["id"] for item in newest["items"]], newest["next_before"], newest["more"]) == ([7, 6], 6, True)
    older = await get_json(client, "/api/rejects", order="newest", before=2)
    assert ([item["id"] for item in older["items"]], older["next_before"], older["more"]) == ([1], 1, False)
    assert (await client.get("/api/pushes/w/n/none/versions")).status == 404


@both_backends
async def test_an_unknown_push_is_404(make_client: ClientFactory) -> None:
    client = await make_client()
    body = await get_json(client, "/api/pushes/w/n/none", status=404)
    assert body["error"] == "not_found"


@both_backends
async def test_stats_count_pushes_duplicates_and_rejects(make_client: ClientFactory) -> None:
    client = await make_client()
    empty = await get_json(client, "/api/stats")
    assert (empty["pushes"], empty["duplicates"], empty["rejects"], empty["last_push_at"]) == (0, 0, 0, None)
    for n in range(3):
        await post_push(client, sample(call_id=f"s{n}", intention="AB"[n % 2]))
    await post_push(client, sample(call_id="s0"))
    await post_push(client, sample(call_id="s0"))
    other = sample(call_id="x")
    other["workflow_id"], other["workflow_name"] = "w2", "second"
    await post_push(client, other)
    for body in (b"nope", b"[]", b"{}"):
        assert (await client.post("/push", data=body)).status in (400, 422)
    stats = await get_json(client, "/api/stats")
    assert stats["pushes"] == 4
    assert stats["deliveries"] == 6
    assert stats["duplicates"] == 2
    assert stats["rejects"] == 3
    assert stats["rejects_by_reason"] == {"invalid_json": 1, "not_an_object": 1, "missing_field": 1}
    assert stats["by_workflow"] == [
        {"workflow_id": sample()["workflow_id"], "workflow_name": "test_api_action6", "pushes": 3},
        {"workflow_id": "w2", "workflow_name": "second", "pushes": 1},
    ]
    assert [row["pushes"] for row in stats["by_node"]] == [3, 1]
    # s0's later body (intention E) is its latest version, which the typed columns follow.
    assert stats["by_intention"] == [{"intention": "E", "pushes": 2}, {"intention": "A", "pushes": 1},
                                     {"intention": "B", "pushes": 1}]  # fmt: skip
    assert stats["last_push_at"] >= stats["first_push_at"]


@both_backends
async def test_rejects_page_with_the_same_cursor(make_client: ClientFactory, backend: str) -> None:
    client = await make_client()
    bodies = [b"nope", b"[1]", b"\xff\xfe", b'{"workflow_id": ""}', b'{"a": "\x00"}']
    for body in bodies:
        assert (await client.post("/push", data=body, headers={"User-Agent": "tester"})).status in (400, 422)
    first = await get_json(client, "/api/rejects", limit=3)
    assert [item["id"] for item in first["items"]] == [1, 2, 3]
    assert first["next_after"] == 3
    assert first["items"][0]["body"] == "nope"
    assert first["items"][0]["headers"]["User-Agent"] == "tester"
    assert first["items"][2]["body_bytes"] == 2  # not UTF-8: shown with replacement characters
    rest = await get_json(client, "/api/rejects", after=3)
    assert [item["reason"] for item in rest["items"]] == ["invalid_field", "invalid_json"]
    assert rest["items"][0]["reprocessed_at"] is None
    # SQLite: stored as text when UTF-8, so that sqlite3 and Datasette show it; with a NUL or not UTF-8, as
    # bytes. PostgreSQL keeps every reject body as bytea (docs/data.md).
    if backend == "sqlite":
        stored = rows(client.server.app[SETTINGS].db_path, "SELECT typeof(body) FROM rejects ORDER BY id")
        assert [row[0] for row in stored] == ["text", "text", "blob", "text", "blob"]
    assert (rest["items"][1]["body"], rest["items"][1]["body_bytes"]) == ('{"a": "\x00"}', 10)
    only = await get_json(client, "/api/rejects", reason="not_an_object")
    assert [item["body"] for item in only["items"]] == ["[1]"]
    assert (await get_json(client, "/api/rejects", status=400, limit=5000))["error"] == "invalid_parameter"


def test_openapi_documents_every_api_route_and_parameter() -> None:
    OPENAPI = document(api_token=True)
    app = create_app(Settings())
    served = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None and route.resource.canonical.startswith("/api")
    }
    assert served == {(path, method) for path, item in OPENAPI["paths"].items() for method in item}
    for path, item in OPENAPI["paths"].items():
        placeholders = set(re.findall(r"\{([^}]+)\}", path))
        for operation in item.values():
            assert {p["name"] for p in operation["parameters"] if p["in"] == "path"} == placeholders
    query = {path: [p["name"] for p in OPENAPI["paths"][path][method]["parameters"]] for path, method in served}
    assert query["/api/pushes"] == list(PUSH_PARAMS)
    assert query["/api/rejects"] == list(REJECT_PARAMS)
    assert query["/api/deliveries"] == list(DELIVERY_PARAMS)


async def test_openapi_declares_the_security_the_server_applies(make_client: ClientFactory) -> None:
    client = await make_client()
    document: dict[str, Any] = await get_json(client, "/api/openapi.json")
    assert document["openapi"].startswith("3.")
    assert "/api/pushes" in document["paths"]
    assert document["security"] == [{}]  # loopback, no token asked for
    guarded = await make_client(api_token=TOKEN)
    response = await guarded.get("/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert (await response.json())["security"] == [{"bearer": []}]


# In JSON Schema's regexes (ECMA 262) "$" ends the input; Python's also matches before a final newline, so
# the pattern is matched whole here instead.
@hypothesis.given(st.from_regex(TIME_PATTERN.strip("^$"), fullmatch=True))
@hypothesis.settings(max_examples=300, deadline=None)
def test_every_time_the_document_allows_is_taken(text: str) -> None:
    assert parse_time("since", text) <= "9999-12-31T23:59:59.999Z"


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("0001-01-01T00:00+01:00", "0000-01-01T00:00:00.000Z"),  # before year 1 in UTC: before every push
        ("9999-12-31T23:59-01:00", "9999-12-31T23:59:59.999Z"),
        ("2026-11-24T19:47:09.5+02:00", "2026-11-24T17:47:09.500Z"),
    ],
)
def test_times_at_the_ends_of_the_calendar_are_clamped(text: str, stored: str) -> None:
    assert parse_time("since", text) == stored


async def test_addresses_without_parameters_refuse_them(make_client: ClientFactory) -> None:
    client = await make_client()
    for path in ("/api/stats", "/api/openapi.json", f"/api/pushes/{KEY}"):
        body = await get_json(client, path, status=400, after=1)
        assert body == {"error": "invalid_parameter", "detail": "unknown parameter 'after'; this address takes none"}


@both_backends
async def test_a_read_that_waits_too_long_for_a_connection_is_503(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "SLOT_WAIT_SECONDS", 0.3)
    client = await make_client(api_readers=1)
    async with client.server.app[READERS].connection():  # the only connection, held by a slow read
        async with asyncio.timeout(5):
            busy = await client.get("/api/stats")
        assert busy.status == 503
        assert busy.headers["Retry-After"] == "5"
        assert (await busy.json())["error"] == "readers_busy"
    assert (await client.get("/api/stats")).status == 200
