"""GET /api/events: a server-sent event each time the writer commits pushes.

An event only says which calls arrived and how (new or duplicate); clients read the rows through
/api/pushes, so there is one read path. Nothing is kept for clients that reconnect: they catch up
with /api/pushes?after=<last seq they saw>.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from handlers.access import read_access
from handlers.api import query_params
from handlers.event_hub import END
from handlers.keys import EVENTS

# A comment line this often keeps proxies from closing an idle stream and finds clients that left.
HEARTBEAT_SECONDS = 15.0
# A client that has not taken a frame within this time has stopped reading (the socket's buffers are
# full): its connection is dropped instead of holding a task and its backlog forever.
WRITE_SECONDS = 10.0


async def send(request: web.Request, response: web.StreamResponse, frame: bytes) -> None:
    try:
        async with asyncio.timeout(WRITE_SECONDS):
            await response.write(frame)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("the client stopped reading") from None


@read_access
async def push_events(request: web.Request) -> web.StreamResponse:
    query_params(request, ())
    hub = request.app[EVENTS]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    # Subscribed before the client sees the stream open, so a commit it catches up from cannot slip between.
    queue = hub.subscribe()
    try:
        await response.prepare(request)
        # Tells EventSource to reconnect after 2 s, and gets the headers to the client at once.
        await send(request, response, b"retry: 2000\n: connected\n\n")
        while True:
            try:
                frame = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                frame = b": keep-alive\n\n"
            if frame == END:
                break
            await send(request, response, frame)
    except ConnectionResetError:
        pass  # the client left
    finally:
        hub.unsubscribe(queue)
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response
