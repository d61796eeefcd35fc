"""Baseline (a), the ceiling: aiohttp reads the push, orjson parses it, the answer is ``{}``; nothing is stored.

No receiver can be faster than this on the same event loop, so the receiver's rate is read against it.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from bench.baseline import EMPTY_OBJECT, serve


async def parse_and_ack(request: web.Request) -> web.Response:
    orjson.loads(await request.read())
    return web.Response(body=EMPTY_OBJECT, content_type="application/json")


def make_app(db_path: str) -> web.Application:
    app = web.Application()
    app.router.add_post("/push", parse_and_ack)
    return app


if __name__ == "__main__":
    serve(make_app)
