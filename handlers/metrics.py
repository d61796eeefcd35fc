"""GET /metrics in the Prometheus text format (same access rule as /api); requests are timed in
handlers.errors' middleware."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from handlers.access import read_access
from handlers.keys import METRICS


@read_access
async def metrics(request: web.Request) -> web.StreamResponse:
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(request.app[METRICS].registry), headers={"Content-Type": content_type})
