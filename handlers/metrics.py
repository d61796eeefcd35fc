"""GET /metrics in the Prometheus text format (same access rule as /api), and the middleware timing requests."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from handlers.access import read_access
from handlers.errors import Handler
from handlers.keys import METRICS


@web.middleware
async def time_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        return await handler(request)
    finally:
        resource = request.match_info.route.resource
        # The route pattern, not the path: bounded label values, and no push token in them.
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].observe_request(route, time.perf_counter() - started)


@read_access
async def metrics(request: web.Request) -> web.StreamResponse:
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(request.app[METRICS].registry), headers={"Content-Type": content_type})
