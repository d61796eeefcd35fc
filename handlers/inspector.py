"""The inspector page on ``/``: plain HTML, CSS and JavaScript that read through /api and /api/events.

Served unless the inspector is turned off (``inspector = false``). The three files are a shell
with no data in them: the data comes from /api under the read rule, with the API token the page asks for.
A browser cannot put a bearer token on the request that opens a page, so the shell is given to every
client on loopback (this machine, an ``ssh -L`` tunnel, a proxy on this machine) without one; a client
elsewhere gets it only by passing the read rule itself, so the page is not shown to the whole network.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from handlers.access import ACCESS

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


async def page(request: web.Request) -> web.Response:
    request.app[ACCESS].check_shell(request)
    return _asset("index.html")


async def asset(request: web.Request) -> web.Response:
    request.app[ACCESS].check_shell(request)
    name = request.match_info["name"]
    if name not in _FILES or name == "index.html":
        raise web.HTTPNotFound()
    return _asset(name)


async def no_icon(request: web.Request) -> web.Response:
    """Browsers ask every site for /favicon.ico; there is none, and 204 says so without a 404 in the log."""
    return web.Response(status=204)
