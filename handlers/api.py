"""GET /api/...: read-only JSON over the pool of read-only connections, behind the read access rule."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiohttp import web

from handlers.access import read_access
from handlers.errors import ApiError
from handlers.keys import DATABASE, READERS
from storage import outbox, queries
from storage.filters import EXACT_FILTERS, TIME_FILTERS, parse_after, parse_int, parse_push_filter
from storage.sql import Reader

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
PUSH_PARAMS = (*EXACT_FILTERS, *TIME_FILTERS, "after", "before", "order", "limit")
REJECT_PARAMS = ("reason", "after", "limit")
DELIVERY_PARAMS = ("destination", "state", "call_id", "after", "limit")


def json_response(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def query_params(request: web.Request, allowed: Collection[str]) -> dict[str, str]:
    """The query string as single values; an unknown or repeated name is a 400, not silently ignored."""
    params: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in allowed:
            known = f"known: {', '.join(allowed)}" if allowed else "this address takes none"
            raise ApiError(400, "invalid_parameter", f"unknown parameter {name!r}; {known}")
        if name in params:
            raise ApiError(400, "invalid_parameter", f"{name} is given more than once")
        params[name] = value
    return params


@asynccontextmanager
async def reader(request: web.Request) -> AsyncIterator[Reader]:
    """A connection from the read pool (ReadersBusy when none comes free in time)."""
    async with request.app[READERS].connection() as conn:
        yield conn


def page_limit(params: Mapping[str, str]) -> int:
    text = params.get("limit")
    return DEFAULT_LIMIT if text is None else parse_int("limit", text, 1, MAX_LIMIT)


def page(items: list[dict[str, Any]], cursor: str) -> web.Response:
    """``next_after`` is the cursor of the last item, or null when the page is empty (nothing newer yet)."""
    return json_response({"items": items, "next_after": items[-1][cursor] if items else None})


@read_access
async def list_pushes(request: web.Request) -> web.Response:
    params = query_params(request, PUSH_PARAMS)
    push_filter = parse_push_filter(params)
    limit = page_limit(params)
    async with reader(request) as conn:
        items = await queries.page_pushes(conn, push_filter, limit)
    if push_filter.newest_first:
        # Going back in time: the next page is below the last (oldest) seq of this one.
        return json_response({"items": items, "next_before": items[-1]["seq"] if items else None})
    return page(items, "seq")


@read_access
async def show_push(request: web.Request) -> web.Response:
    query_params(request, ())
    key = request.match_info
    async with reader(request) as conn:
        push = await queries.push_detail(conn, key["workflow_id"], key["node_id"], key["call_id"])
    if push is None:
        raise ApiError(404, "not_found", "no push is stored for this workflow_id, node_id and call_id")
    return json_response(push)


@read_access
async def show_stats(request: web.Request) -> web.Response:
    query_params(request, ())
    async with reader(request) as conn:
        return json_response(await request.app[DATABASE].stats(conn))


@read_access
async def list_rejects(request: web.Request) -> web.Response:
    params = query_params(request, REJECT_PARAMS)
    after = parse_after(params)
    limit = page_limit(params)
    async with reader(request) as conn:
        items = await queries.page_rejects(conn, after, limit, params.get("reason"))
    return page(items, "id")


@read_access
async def list_deliveries(request: web.Request) -> web.Response:
    params = query_params(request, DELIVERY_PARAMS)
    for name in ("destination", "call_id"):
        if params.get(name) == "":
            raise ApiError(400, "invalid_parameter", f"{name} must not be empty")
    state = params.get("state")
    if state is not None and state not in outbox.STATES:
        raise ApiError(400, "invalid_parameter", f"state must be one of {', '.join(outbox.STATES)}, not {state!r}")
    job_filter = outbox.JobFilter(params.get("destination"), state, params.get("call_id"), parse_after(params))
    limit = page_limit(params)
    async with reader(request) as conn:
        items = await outbox.page_jobs(conn, job_filter, limit)
    return page(items, "id")
