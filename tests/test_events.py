"""GET /api/events: each commit of pushes reaches open streams as one server-sent event."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from handlers import events
from handlers.event_hub import END, MAX_BACKLOG, EventHub
from handlers.keys import EVENTS
from plumbing.settings import Settings
from storage.records import Outcome
from tests.process import running_server
from tests.support import SAMPLE_BYTES, TOKEN, ClientFactory, both_backends, next_event, record


@both_backends
async def test_stream_tells_new_and_duplicate_pushes(make_client: ClientFactory) -> None:
    client = await make_client()
    stream = await client.get("/api/events")
    assert stream.status == 200
    assert stream.headers["Content-Type"] == "text/event-stream"
    assert await stream.content.readline() == b"retry: 2000\n"
    assert (await client.post("/push", data=SAMPLE_BYTES)).status == 200
    assert (await client.post("/push", data=b"not json")).status == 400  # rejects are not pushes
    assert (await client.post("/push", data=SAMPLE_BYTES)).status == 200
    first = await next_event(stream)
    second = await next_event(stream)
    call = orjson.loads(SAMPLE_BYTES)
    key = {"workflow_id": call["workflow_id"], "node_id": call["node_id"], "call_id": call["call"]["call_id"]}
    assert first[0] == second[0] == "pushes"
    assert isinstance(first[1], list)
    assert isinstance(second[1], list)
    assert [{k: e[k] for k in ("outcome", *key)} for e in first[1]] == [{"outcome": "new", **key}]
    assert [e["outcome"] for e in second[1]] == ["duplicate"]
    stream.close()


async def test_stream_follows_the_read_access_rule(make_client: ClientFactory) -> None:
    client = await make_client(api_token=TOKEN)
    assert (await client.get("/api/events")).status == 401
    stream = await client.get("/api/events", headers={"Authorization": f"Bearer {TOKEN}"})
    assert stream.status == 200
    stream.close()


async def test_stream_takes_no_parameters(make_client: ClientFactory) -> None:
    client = await make_client()
    answer = await client.get("/api/events?after=5")
    assert answer.status == 400
    assert (await answer.json())["error"] == "invalid_parameter"


async def test_a_client_that_falls_behind_is_cut_off() -> None:
    hub = EventHub()
    slow = hub.subscribe()
    batch = [record("behind")]
    for _ in range(MAX_BACKLOG + 1):
        hub.on_commit(batch, [Outcome.NEW], 0.001)
    assert hub.listeners == 0
    frames = [slow.get_nowait() for _ in range(slow.qsize())]
    assert len(frames) == MAX_BACKLOG + 1
    assert frames[-1] == END
    assert all(frame.startswith(b"event: pushes\ndata: ") for frame in frames[:-1])


async def test_a_stream_opened_while_stopping_ends_at_once(make_client: ClientFactory) -> None:
    client = await make_client()
    client.server.app[EVENTS].close()  # what the server does first when it stops
    async with asyncio.timeout(3):
        stream = await client.get("/api/events")
        assert stream.status == 200
        assert await stream.read() == b"retry: 2000\n: connected\n\n"
    assert client.server.app[EVENTS].listeners == 0


def test_open_streams_do_not_hold_up_shutdown(tmp_path: Path) -> None:
    with (
        running_server(tmp_path, tmp_path / "pushes.sqlite3") as server,
        urllib.request.urlopen(f"{server.url}/api/events", timeout=10) as stream,
    ):
        assert stream.readline() == b"retry: 2000\n"
        started = time.monotonic()
        assert server.stop() == 0
        took = time.monotonic() - started
        assert stream.read() == b": connected\n\n"  # then the server ended the stream
    # A stream left open would hold the exit for the whole shutdown_timeout.
    assert took < Settings().shutdown_timeout - 1, f"shutdown took {took:.1f}s with an open event stream"


async def test_a_client_that_stops_reading_is_dropped(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "WRITE_SECONDS", 0.5)
    client = await make_client()
    hub = client.server.app[EVENTS]
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few frames
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", client.port))
        await loop.sock_sendall(sock, b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        async with asyncio.timeout(5):
            while hub.listeners == 0:
                await asyncio.sleep(0.01)
        # Several megabytes of events that the client never reads; fewer batches than the backlog limit.
        batch = [record(f"stalled-{n}-{'x' * 400}") for n in range(2000)]
        for _ in range(10):
            hub.on_commit(batch, [Outcome.NEW] * len(batch), 0.001)
        async with asyncio.timeout(10):
            while hub.listeners:
                await asyncio.sleep(0.05)
            # The server dropped the connection: reading on reaches its end (or a reset).
            with contextlib.suppress(ConnectionResetError):
                while await loop.sock_recv(sock, 1 << 20):
                    pass
