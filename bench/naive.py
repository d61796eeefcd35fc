"""Baseline (b), the naive receiver: one INSERT and one commit per request, stdlib sqlite3, inside the handler.

It checks and builds the row with the receiver's own code, and writes with the same durability (WAL,
``synchronous = FULL``), so what differs from the receiver is only how the writes reach the disk.
"""

from __future__ import annotations

import sqlite3

from aiohttp import web

from bench.baseline import EMPTY_OBJECT, serve
from bench.direct import INSERT_PUSH, connect, push_row
from handlers.errors import error_response, http_error
from handlers.payload import InvalidPush, decode, to_record
from storage.records import utc_now
from tests.support import create_schema

CONNECTION = web.AppKey("connection", sqlite3.Connection)
_COUNT_DUPLICATE = (
    " ON CONFLICT (workflow_id, node_id, call_id) DO UPDATE SET deliveries = deliveries + 1,"
    " last_received_at = excluded.last_received_at"
)


async def insert_and_commit(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        record = to_record(body, decode(body), utc_now())
    except InvalidPush as exc:
        error = http_error(exc, retry_after=1)
        assert error is not None  # every InvalidPush is mapped
        return error_response(error)
    conn = request.app[CONNECTION]
    conn.execute(INSERT_PUSH + _COUNT_DUPLICATE, push_row(record))
    conn.commit()
    return web.Response(body=EMPTY_OBJECT, content_type="application/json")


def make_app(db_path: str) -> web.Application:
    async def open_database(app: web.Application) -> None:
        await create_schema(db_path, "FULL")
        app[CONNECTION] = connect(db_path, "FULL")

    async def close_database(app: web.Application) -> None:
        app[CONNECTION].close()

    app = web.Application()
    app.on_startup.append(open_database)
    app.on_cleanup.append(close_database)
    app.router.add_post("/push", insert_and_commit)
    return app


if __name__ == "__main__":
    serve(make_app)
