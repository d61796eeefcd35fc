"""Every route of the server, registered in one place."""

from __future__ import annotations

from aiohttp import web

from handlers import api, inspector, openapi
from handlers.errors import quiet
from handlers.events import push_events
from handlers.health import healthz, readyz
from handlers.metrics import metrics
from handlers.push import receive_push
from plumbing.settings import Settings


def setup_routes(app: web.Application, settings: Settings) -> None:
    app.router.add_post(settings.push_path, receive_push)
    # Every path under the push path reaches the handler, with a push token or without, so that each 404
    # there is counted as a refused push.
    app.router.add_post(f"{settings.push_path}/{{token:.*}}", receive_push)
    # Probes, scrapes and page files are polled: their successful answers are not logged at info.
    app.router.add_get("/healthz", quiet(healthz))
    app.router.add_get("/readyz", quiet(readyz))
    app.router.add_get("/metrics", quiet(metrics))
    app.router.add_get("/favicon.ico", quiet(inspector.no_icon))
    app.router.add_get("/api/pushes", api.list_pushes)
    app.router.add_get("/api/pushes/{workflow_id}/{node_id}/{call_id}", api.show_push)
    app.router.add_get("/api/pushes/{workflow_id}/{node_id}/{call_id}/versions", api.list_versions)
    app.router.add_get("/api/stats", api.show_stats)
    app.router.add_get("/api/rejects", api.list_rejects)
    app.router.add_get("/api/deliveries", api.list_deliveries)
    app.router.add_post("/api/deliveries/{id}/retry", api.retry_delivery)
    app.router.add_get("/api/destinations", api.list_destinations)
    app.router.add_get("/api/openapi.json", openapi.openapi)
    app.router.add_get("/api/events", push_events)
    if settings.inspector:
        app.router.add_get("/", quiet(inspector.page))
        app.router.add_get("/inspector/{name}", quiet(inspector.asset))
