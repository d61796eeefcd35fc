"""The inspector page on ``/``: plain HTML, CSS and JavaScript that read through /api and /api/events.

Served only when the inspector is on (``inspector = true`` or ``--dev``), and under the same read rule as
/api: the page holds no data of its own, but there is no reason to show it to clients that cannot read.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from handlers.access import read_access

ASSETS = Path(__file__).parent / "inspector_assets"
_CONTENT_TYPES = {"index.html": "text/html", "inspector.css": "text/css", "inspector.js": "text/javascript"}
# Read once: three small files, served on every page load.
_FILES = {name: (ASSETS / name).read_bytes() for name in _CONTENT_TYPES}


def _asset(name: str) -> web.Response:
    return web.Response(
        body=_FILES[name],
        content_type=_CONTENT_TYPES[name],
        charset="utf-8",
        headers={
            "Cache-Control": "no-cache",
            # Everything comes from this server; push contents are shown as text, never run.
            "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        },
    )


@read_access
async def page(request: web.Request) -> web.Response:
    return _asset("index.html")


@read_access
async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _FILES or name == "index.html":
        raise web.HTTPNotFound()
    return _asset(name)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", page)
    app.router.add_get("/inspector/{name}", asset)
