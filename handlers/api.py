"""GET /api/...: read-only JSON over the pool of read-only connections, behind the read access rule."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import orjson
from aiohttp import web

from handlers.access import read_access
from handlers.errors import ApiError
from handlers.keys import READERS
from storage import queries
from storage.filters import EXACT_FILTERS, TIME_FILTERS, FilterError, parse_int, parse_push_filter

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
PUSH_PARAMS = (*EXACT_FILTERS, *TIME_FILTERS, "after", "limit")

routes = web.RouteTableDef()


def json_response(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def query_params(request: web.Request, allowed: Collection[str]) -> dict[str, str]:
    """The query string as single values; an unknown or repeated name is a 400, not silently ignored."""
    params: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in allowed:
            raise ApiError(400, "invalid_parameter", f"unknown parameter {name!r}; known: {', '.join(allowed)}")
        if name in params:
            raise ApiError(400, "invalid_parameter", f"{name} is given more than once")
        params[name] = value
    return params


def page_limit(params: Mapping[str, str]) -> int:
    text = params.get("limit")
    return DEFAULT_LIMIT if text is None else parse_int("limit", text, 1, MAX_LIMIT)


def page(items: list[dict[str, Any]], cursor: str) -> web.Response:
    """``next_after`` is the cursor of the last item, or null when the page is empty (nothing newer yet)."""
    return json_response({"items": items, "next_after": items[-1][cursor] if items else None})


@routes.get("/api/pushes")
@read_access
async def list_pushes(request: web.Request) -> web.Response:
    params = query_params(request, PUSH_PARAMS)
    try:
        push_filter = parse_push_filter(params)
        limit = page_limit(params)
    except FilterError as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from None
    async with request.app[READERS].connection() as conn:
        items = await queries.page_pushes(conn, push_filter, limit)
    return page(items, "seq")
