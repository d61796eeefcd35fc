"""Forwarding on the real server process, to a real downstream HTTP server: what arrives, signed, and how
failures are retried."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.downstream import Behaviour, Downstream
from tests.forward_helpers import all_delivered, forward_config, job_states, new_secret, until
from tests.load import Tally, deliver_all, push_body
from tests.process import running_server
from tests.support import both_backends, get, rows, sample

FAST = {"backoff_base": 0.05, "backoff_cap": 0.5}


async def post_bodies(url: str, bodies: list[bytes]) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for body in bodies:
            async with session.post(url, data=body) as response:
                assert response.status == 200, await response.text()


@both_backends
async def test_every_stored_push_reaches_each_matching_destination_signed(tmp_path: Path, db_path: Any) -> None:
    downstream = Downstream()
    await downstream.start()
    secret_all, secret_a = new_secret(), new_secret()
    config = forward_config(
        tmp_path / "forward.toml",
        {"name": "all", "url": downstream.url("/all"), "secret": secret_all, **FAST},
        {"name": "only-a", "url": downstream.url("/a"), "secret": secret_a, "filter": {"intention": ["A"]}, **FAST},
    )
    bodies = {
        f"call-{n}": orjson.dumps(sample(call_id=f"call-{n}", intention="A" if n % 2 else "B")) for n in range(20)
    }
    changed = orjson.dumps(sample(call_id="call-1", intention="A", hangup_type="changed"))
    try:
        with running_server(tmp_path, db_path, "--config", str(config)) as server:
            # Each call, then each again (a sender's retry: no second delivery), then a differing body for one.
            await post_bodies(f"{server.url}/push", [*bodies.values(), *bodies.values(), changed])
            await until(all_delivered(db_path, 20 + 10 + 2), 30, "every job delivered")
            assert server.stop() == 0
    finally:
        await downstream.stop()

    everything, only_a = downstream.on("/all"), downstream.on("/a")
    assert len(everything) == 21
    assert len(only_a) == 11
    assert sorted(r.body for r in everything) == sorted([*bodies.values(), changed])  # the bodies as received
    assert sorted(r.body for r in only_a) == sorted([b for b in bodies.values() if b'"A"' in b] + [changed])
    versions = {r.body: r.headers["x-airudder-version"] for r in everything}
    assert versions[changed] == "1"
    assert versions[bodies["call-1"]] == "0"
    for path, secret in (("/all", secret_all), ("/a", secret_a)):
        for received in downstream.on(path):
            assert received.headers["idempotency-key"] == received.headers["webhook-id"]
            Webhook(secret).verify(received.body, received.headers)  # raises when the signature is wrong
    one = everything[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(one.body, one.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_all).verify(one.body + b" ", one.headers)
    # Different destinations and versions never share a key.
    assert len({r.headers["webhook-id"] for r in [*everything, *only_a]}) == 32


async def test_failures_are_retried_with_the_same_id_honouring_retry_after_and_timeouts(tmp_path: Path) -> None:
    downstream = Downstream(
        behaviours={
            "/flaky": Behaviour(fail_first=2, fail_status=500),
            "/busy": Behaviour(fail_first=1, fail_status=429, retry_after="2"),
            "/slow": Behaviour(hang_first=3.0),
        }
    )
    await downstream.start()
    secret = new_secret()
    config = forward_config(
        tmp_path / "forward.toml",
        {"name": "flaky", "url": downstream.url("/flaky"), "secret": secret, **FAST},
        {"name": "busy", "url": downstream.url("/busy"), "secret": secret, **FAST},
        {"name": "slow", "url": downstream.url("/slow"), "secret": secret, "timeout": 0.5, **FAST},
    )
    db_path = tmp_path / "pushes.sqlite3"
    try:
        with running_server(tmp_path, db_path, "--config", str(config)) as server:
            tally = Tally()
            await deliver_all(f"{server.url}/push", [f"r-{n}" for n in range(5)], tally, concurrency=1)
            assert tally.statuses == {200: 5}
            await until(all_delivered(db_path, 15), 40, "every job delivered")
            status, body = get(f"{server.url}/api/pushes/{sample()['workflow_id']}/{sample()['node_id']}/r-0")
            assert status == 200
            detail = orjson.loads(body)
            assert server.stop() == 0
    finally:
        await downstream.stop()

    flaky = downstream.ids("/flaky")
    assert len(flaky) == 5
    assert set(flaky.values()) == {3}
    for webhook_id in downstream.ids("/busy"):
        first, second = (r.at for r in downstream.on("/busy") if r.headers["webhook-id"] == webhook_id)
        assert second - first >= 1.9, "Retry-After: 2 was not honoured"
    assert set(downstream.ids("/slow").values()) == {2}  # the hung attempt timed out and was tried again
    by_destination = {job["destination"]: job for job in detail["forwarding"]}
    assert [a["status"] for a in by_destination["flaky"]["history"]] == [500, 500, 200]
    assert by_destination["flaky"]["state"] == "delivered"
    assert by_destination["flaky"]["attempts"] == 3
    slow = by_destination["slow"]["history"]
    assert slow[0]["status"] is None
    assert slow[0]["error"] == "no answer within 0.5s"
    assert slow[1]["status"] == 200
    assert all(a["seconds"] >= 0 for job in detail["forwarding"] for a in job["history"])
    assert rows(db_path, "SELECT count(*) FROM forward_attempts")[0][0] == 5 * 3 + 5 * 2 + 5 * 2


async def test_a_command_destination_gets_the_push_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    script = tmp_path / "take.sh"
    # Fails the first time for each delivery (no marker yet), then keeps the body under its webhook id.
    script.write_text(
        '#!/bin/sh\nif [ ! -e "$0.$WEBHOOK_ID" ]; then touch "$0.$WEBHOOK_ID"; echo "not yet" >&2; exit 3; fi\n'
        f'cat > "{out}/$WEBHOOK_ID.json"\n'
    )
    script.chmod(0o755)
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nsleep 30\n")
    hang.chmod(0o755)
    config = forward_config(
        tmp_path / "forward.toml",
        {"name": "script", "command": [str(script)], **FAST},
        {"name": "hang", "command": [str(hang)], "timeout": 0.3, "max_attempts": 2, **FAST},
    )
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path, "--config", str(config)) as server:
        await post_bodies(f"{server.url}/push", [push_body("c-1"), push_body("c-2")])
        await until(lambda: job_states(db_path, "script") == {"delivered": 2}, 20, "the script took both")
        await until(lambda: job_states(db_path, "hang") == {"dead": 2}, 20, "the hung program was killed twice")
        assert server.stop() == 0
    assert sorted(p.read_bytes() for p in out.iterdir()) == sorted([push_body("c-1"), push_body("c-2")])
    errors = [row[0] for row in rows(db_path, "SELECT error FROM forward_attempts ORDER BY id")]
    assert errors.count("exit 3: not yet") == 2
    assert errors.count("still running after 0.3s; killed") == 4


async def test_nothing_is_forwarded_without_destinations(tmp_path: Path) -> None:
    db_path = tmp_path / "pushes.sqlite3"
    with running_server(tmp_path, db_path) as server:
        await post_bodies(f"{server.url}/push", [push_body("n-1")])
        assert server.stop() == 0
    assert rows(db_path, "SELECT count(*) FROM forward_jobs")[0][0] == 0
    await asyncio.sleep(0)
