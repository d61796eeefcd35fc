"""Who may push: the allowlist, X-Forwarded-For from trusted proxies only, and the count of wrong tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from handlers.access import AccessPolicy
from handlers.keys import METRICS
from plumbing.settings import Settings
from tests.support import SAMPLE_BYTES, ClientFactory, rows


def refusals(client: Any, reason: str) -> float:
    """Pushes refused with ``reason``, as the metrics page reports them."""
    value = client.server.app[METRICS].registry.get_sample_value(
        "airudder_receiver_pushes_rejected_total", {"reason": reason}
    )
    return float(value or 0.0)


def policy(trusted: tuple[str, ...] = (), allowed: tuple[str, ...] = ()) -> AccessPolicy:
    return AccessPolicy.from_settings(Settings(trusted_proxies=trusted, allow_ips=allowed))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        pytest.param("198.51.100.7", ["203.0.113.9"], "198.51.100.7", id="untrusted-peer-is-not-believed"),
        pytest.param("10.0.0.2", [], "10.0.0.2", id="proxy-without-header"),
        pytest.param("10.0.0.2", ["203.0.113.9"], "203.0.113.9", id="trusted-proxy"),
        pytest.param("10.0.0.2", ["1.1.1.1, 203.0.113.9"], "203.0.113.9", id="left-hops-are-the-clients-word"),
        pytest.param("10.0.0.2", ["203.0.113.9, 10.0.0.3"], "203.0.113.9", id="chain-of-trusted-proxies"),
        pytest.param("10.0.0.2", ["1.1.1.1", "203.0.113.9"], "203.0.113.9", id="two-headers"),
        pytest.param("10.0.0.2", ["10.0.0.4, 10.0.0.3"], "10.0.0.4", id="all-hops-trusted"),
        pytest.param("10.0.0.2", ["203.0.113.9:5123"], "203.0.113.9", id="hop-with-port"),
        pytest.param("10.0.0.2", ["[2001:db8::5]:443"], "2001:db8::5", id="bracketed-ipv6"),
        pytest.param("::ffff:10.0.0.2", ["203.0.113.9"], "203.0.113.9", id="ipv4-mapped-peer"),
        pytest.param("10.0.0.2", ["203.0.113.9, unknown"], "invalid", id="garbage-hop-ends-the-walk"),
        pytest.param("10.0.0.2", ["203.0.113.9, "], "invalid", id="empty-hop"),
    ],
)
def test_client_address_believes_only_trusted_proxies(peer: str, forwarded: list[str], client: str) -> None:
    assert policy(trusted=("10.0.0.0/8",)).client(peer, forwarded) == client


@pytest.mark.parametrize(
    ("client", "allowed"),
    [("203.0.113.9", True), ("2001:db8::1", True), ("198.51.100.1", False), ("unknown", False), ("", False)],
)
def test_allowlist_matches_networks_and_fails_closed(client: str, allowed: bool) -> None:
    assert policy(allowed=("203.0.113.0/24", "2001:db8::/32")).allows(client) is allowed
    assert policy().allows(client), "an empty allowlist lets everyone push"


async def test_address_outside_allowlist_is_403_counted_and_not_stored(
    make_client: ClientFactory, db_path: Path
) -> None:
    client = await make_client(allow_ips=("10.0.0.0/8",))
    response = await client.post("/push", data=SAMPLE_BYTES)
    assert response.status == 403
    assert await response.json() == {"error": "forbidden", "detail": "this address may not push here"}
    assert refusals(client, "forbidden") == 1
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 0
    assert rows(db_path, "SELECT count(*) FROM rejects")[0][0] == 0
    allowed = await make_client(allow_ips=("127.0.0.0/8",))
    assert (await allowed.post("/push", data=SAMPLE_BYTES)).status == 200


async def test_forwarded_address_decides_only_behind_a_trusted_proxy(make_client: ClientFactory, db_path: Path) -> None:
    direct = await make_client(allow_ips=("203.0.113.0/24",))
    spoofed = await direct.post("/push", data=SAMPLE_BYTES, headers={"X-Forwarded-For": "203.0.113.9"})
    assert spoofed.status == 403

    proxied = await make_client(
        allow_ips=("203.0.113.0/24",), trusted_proxies=("127.0.0.1",), api_token="read-0123456789abcdef"
    )
    for forwarded, status in [
        ("203.0.113.9", 200),
        ("198.51.100.1", 403),
        ("203.0.113.9, 198.51.100.1", 403),  # the left hop is what the client wrote
    ]:
        response = await proxied.post("/push", data=SAMPLE_BYTES, headers={"X-Forwarded-For": forwarded})
        assert response.status == status, forwarded
    assert refusals(proxied, "forbidden") == 2

    bad = await proxied.post("/push", data=b"not json", headers={"X-Forwarded-For": "203.0.113.77"})
    assert bad.status == 400
    (reject,) = rows(db_path, "SELECT remote, reason FROM rejects")
    assert tuple(reject) == ("203.0.113.77", "invalid_json")


async def test_wrong_tokens_are_counted_and_store_nothing(make_client: ClientFactory, db_path: Path) -> None:
    client = await make_client(push_token="s3cret-0123456789")
    for path in ("/push", "/push/", "/push/s3cret-012345678", "/push/s3cret-0123456789-", "/push/s3cret-0123456789/x",
                 "/push/%ED%A0%80"):  # fmt: skip
        response = await client.post(path, data=b"not even json")
        assert response.status == 404, path
        assert (await response.json())["error"] == "not_found"
    assert refusals(client, "not_found") == 6
    assert rows(db_path, "SELECT count(*) FROM rejects")[0][0] == 0
    assert (await client.post("/push/s3cret-0123456789", data=SAMPLE_BYTES)).status == 200
    assert refusals(client, "not_found") == 6
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 1


async def test_every_404_under_the_push_path_is_counted_without_a_push_token_too(
    make_client: ClientFactory, db_path: Path
) -> None:
    client = await make_client()
    for path in ("/push/", "/push/guess", "/push/a/b"):
        response = await client.post(path, data=SAMPLE_BYTES)
        assert (response.status, (await response.json())["error"]) == (404, "not_found"), path
    assert refusals(client, "not_found") == 3
    assert (await client.post("/push", data=SAMPLE_BYTES)).status == 200
    assert rows(db_path, "SELECT count(*) FROM pushes")[0][0] == 1
