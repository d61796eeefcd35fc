"""The read access rule: a bearer token when one is set, otherwise loopback clients only."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from plumbing.addresses import is_loopback
from plumbing.settings import Settings
from server import create_app
from tests.process import running_server
from tests.rawhttp import exchange, request_bytes
from tests.support import SAMPLE_BYTES, TOKEN, TYPED, ClientFactory, get, post


def api_routes() -> list[str]:
    """Every GET path under /api, with placeholders filled in."""
    app = create_app(Settings())
    paths = {
        route.resource.canonical
        for route in app.router.routes()
        if route.method == "GET" and route.resource is not None and route.resource.canonical.startswith("/api/")
    }
    return sorted(re.sub(r"\{[^}]+\}", "x", path) for path in paths)


# What a reader who passes the rule gets on an empty database: the placeholder call does not exist.
ALLOWED_STATUS = {
    "/api/deliveries": 200,
    "/api/destinations": 200,
    "/api/events": 200,
    "/api/openapi.json": 200,
    "/api/pushes": 200,
    "/api/pushes/x/x/x": 404,
    "/api/pushes/x/x/x/versions": 404,
    "/api/rejects": 200,
    "/api/stats": 200,
}


def test_every_api_route_has_an_expected_status() -> None:
    assert api_routes() == sorted(ALLOWED_STATUS)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.2", False),
        ("::ffff:192.0.2.2", False),
        ("fd00::2", False),
        ("", False),
        (None, False),
        ("not-an-address", False),
    ],
)
def test_is_loopback(address: str | None, expected: bool) -> None:
    assert is_loopback(address) is expected


async def test_without_token_loopback_reads(make_client: ClientFactory) -> None:
    client = await make_client()
    for path in api_routes():
        async with client.get(path) as response:
            assert response.status == ALLOWED_STATUS[path], path


async def test_without_token_a_proxied_request_is_refused(make_client: ClientFactory) -> None:
    client = await make_client()
    for header in ("X-Forwarded-For", "Forwarded"):
        response = await client.get("/api/pushes", headers={header: "203.0.113.9"})
        assert response.status == 401
        assert (await response.json())["error"] == "unauthorized"


async def test_with_token_every_api_route_needs_it(make_client: ClientFactory) -> None:
    client = await make_client(api_token=TOKEN)
    paths = api_routes()
    assert "/api/pushes" in paths
    for path in paths:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = await client.get(path, headers=headers)
            assert response.status == 401, (path, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            body = await response.json()
            assert set(body) == {"error", "detail"}
            assert body["error"] == "unauthorized"
        async with client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == ALLOWED_STATUS[path], path


# A documentation address (RFC 5737): a client on another machine.
REMOTE_PEER = "192.0.2.44"


async def test_a_client_off_loopback_needs_the_token(make_client: ClientFactory) -> None:
    open_app = await make_client(peer=REMOTE_PEER)
    response = await open_app.get("/api/pushes")
    assert response.status == 401
    assert "loopback" in (await response.json())["detail"]

    guarded = await make_client(peer=REMOTE_PEER, api_token=TOKEN)
    assert (await guarded.get("/api/pushes")).status == 401
    assert (await guarded.get("/api/pushes", headers={"Authorization": f"Bearer {TOKEN}"})).status == 200


async def test_loopback_gets_the_shell_but_not_the_data_without_the_token(make_client: ClientFactory) -> None:
    client = await make_client(inspector=True, api_token=TOKEN)
    page = await client.get("/")
    assert page.status == 200
    assert "<title>AIRudder pushes" in await page.text()
    assert (await client.get("/inspector/inspector.js")).status == 200
    assert (await client.get("/inspector/nope.js")).status == 404
    assert (await client.get("/api/pushes")).status == 401
    assert (await client.get("/api/events")).status == 401


async def test_off_loopback_the_shell_needs_the_token(make_client: ClientFactory) -> None:
    client = await make_client(peer=REMOTE_PEER, inspector=True, api_token=TOKEN)
    for path in ("/", "/inspector/inspector.js"):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})).status == 200


# Every route that reads, with what a reader who passes the rules gets on an empty database.
READ_ROUTES = {**ALLOWED_STATUS, "/metrics": 200, "/": 200, "/inspector/inspector.js": 200}
FOREIGN_HOST = "attacker.example:8080"


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:8080", "127.0.0.1:9", "127.8.0.1", "[::1]:8080", "[::1]", "LocalHost:1"]
)
async def test_without_token_a_loopback_host_reads(make_client: ClientFactory, host: str) -> None:
    client = await make_client(inspector=True)
    for path, status in READ_ROUTES.items():
        async with client.get(path, headers={"Host": host}) as response:
            assert response.status == status, (path, host)


async def test_without_token_a_foreign_host_is_403_on_every_read_route(make_client: ClientFactory) -> None:
    """DNS rebinding: a page whose name now points at 127.0.0.1 sends its own name as Host."""
    client = await make_client(inspector=True)
    for path in READ_ROUTES:
        for host in (FOREIGN_HOST, "attacker.example", "127.0.0.1.attacker.example", "[::2]:8080", ""):
            response = await client.get(path, headers={"Host": host})
            assert response.status == 403, (path, host)
            body = await response.json()
            assert body["error"] == "forbidden_host", (path, host)
            assert set(body) == {"error", "detail"}
    # The push path is for AIRudder, which names whatever host it was given.
    assert (await client.post("/push", data=SAMPLE_BYTES, headers={"Host": FOREIGN_HOST})).status == 200


async def test_allowed_hosts_are_read_from_any_port(make_client: ClientFactory) -> None:
    client = await make_client(inspector=True, allowed_hosts=("Receiver.Internal",))
    for path, status in READ_ROUTES.items():
        for host in ("receiver.internal", "receiver.internal:8080", "RECEIVER.internal:1"):
            async with client.get(path, headers={"Host": host}) as response:
                assert response.status == status, (path, host)
        assert (await client.get(path, headers={"Host": FOREIGN_HOST})).status == 403, path


async def test_with_token_the_host_is_not_checked(make_client: ClientFactory) -> None:
    client = await make_client(inspector=True, api_token=TOKEN)
    bearer = {"Authorization": f"Bearer {TOKEN}", "Host": FOREIGN_HOST}
    for path, status in READ_ROUTES.items():
        async with client.get(path, headers=bearer) as response:
            assert response.status == status, path
    assert (await client.get("/api/pushes", headers={"Host": FOREIGN_HOST})).status == 401


def test_a_real_server_refuses_a_rebound_host(tmp_path: Path) -> None:
    """What ``curl -H 'Host: attacker.example:8080' http://127.0.0.1:PORT/api/pushes`` gets."""
    with running_server(tmp_path, tmp_path / "pushes.sqlite3") as server:
        assert post(f"{server.url}/push", SAMPLE_BYTES)[0] == 200
        status, body = get(f"{server.url}/api/pushes", headers={"Host": FOREIGN_HOST})
        assert status == 403
        assert orjson.loads(body)["error"] == "forbidden_host"
        assert b"817377d194" not in body
        status, body = get(f"{server.url}/api/pushes", headers={"Host": f"localhost:{server.port}"})
        assert status == 200
        assert orjson.loads(body)["items"][0]["call_id"] == TYPED["call_id"]


def test_a_token_that_is_not_utf8_is_refused_with_one_log_line(tmp_path: Path) -> None:
    """Header and path bytes that are not UTF-8 reach the secret comparison; they must not crash it."""
    config = tmp_path / "config.toml"
    config.write_text(f'api_token = "{TOKEN}"\npush_token = "push-0123456789abcdef"\n')
    with running_server(tmp_path, tmp_path / "pushes.sqlite3", "--config", str(config)) as server:
        api = exchange(server.url, [request_bytes("GET", "/api/pushes", headers={"Authorization": "Bearer \xff\xfe"})])
        # Raw bytes above 0x7f in the request line are refused by aiohttp's parser (400, no handler runs);
        # escaped, they are decoded into the path and reach the push token comparison.
        push = exchange(server.url, [request_bytes("POST", "/push/%FF%FE", SAMPLE_BYTES)])
        assert server.stop() == 0
    log = server.log()
    assert api.status == 401, api
    assert orjson.loads(api.body) == {"error": "unauthorized", "detail": "the bearer token is not the api_token"}
    assert push.status == 404, push
    assert orjson.loads(push.body)["error"] == "not_found"
    assert "Traceback" not in log, log
    assert [line for line in log.splitlines() if "/api/pushes" in line and "status=401" in line], log
    assert len([line for line in log.splitlines() if "GET /api/pushes" in line]) == 1, log
    assert len([line for line in log.splitlines() if "POST /push/" in line]) == 1, log
