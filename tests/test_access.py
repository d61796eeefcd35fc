"""The read access rule: a bearer token when one is set, otherwise loopback clients only."""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest

from plumbing.addresses import is_loopback
from plumbing.settings import Settings
from server import create_app
from tests.conftest import ClientFactory

TOKEN = "read-0123456789abcdef"


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
    "/api/events": 200,
    "/api/openapi.json": 200,
    "/api/pushes": 200,
    "/api/pushes/x/x/x": 404,
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


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (routing a UDP socket sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if is_loopback(address) or address == "0.0.0.0" else address


async def test_a_client_off_loopback_needs_the_token(aiohttp_client: Any, settings: Settings) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback to connect from")
    open_app = await aiohttp_client(create_app(settings), server_kwargs={"host": address})
    response = await open_app.get("/api/pushes")
    assert response.status == 401
    assert "loopback" in (await response.json())["detail"]

    guarded = await aiohttp_client(
        create_app(Settings(db_path=settings.db_path, api_token=TOKEN)), server_kwargs={"host": address}
    )
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


async def test_off_loopback_the_shell_needs_the_token(aiohttp_client: Any, settings: Settings) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback to connect from")
    app = create_app(Settings(db_path=settings.db_path, inspector=True, api_token=TOKEN))
    client = await aiohttp_client(app, server_kwargs={"host": address})
    for path in ("/", "/inspector/inspector.js"):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})).status == 200
