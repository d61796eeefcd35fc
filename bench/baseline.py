"""What the two baseline servers share: the receiver's flags, /healthz, and the same event loop choice."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from aiohttp import web

from plumbing.event_loop import new_event_loop

EMPTY_OBJECT = b"{}"


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def serve(make_app: Callable[[str], web.Application], argv: Sequence[str] | None = None) -> None:
    """Serve ``make_app(db_path)`` on 127.0.0.1, taking the flags the benchmark gives every server."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", default="")
    args = parser.parse_args(argv)
    app = make_app(args.db)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None, loop=new_event_loop())
