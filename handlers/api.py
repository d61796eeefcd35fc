"""GET /api/...: read-only JSON over the pool of read-only connections, behind the read access rule; and
the one thing /api changes, a delivery sent again, which goes through the writer like every write."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from handlers.access import read_access
from handlers.errors import ApiError
from handlers.keys import DATABASE, READERS, SETTINGS, WRITER
from storage import outbox, queries
from storage.filters import (
    EXACT_FILTERS,
    MAX_SEQ,
    TIME_FILTERS,
    parse_after,
    parse_cursor,
    parse_int,
    parse_push_filter,
)
from storage.records import RetryRecord
from storage.sql import Reader

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
PUSH_PARAMS = (*EXACT_FILTERS, *TIME_FILTERS, "after", "before", "order", "limit")
REJECT_PARAMS = ("reason", "after", "before", "order", "limit")
VERSION_PARAMS = ("after", "limit")
NO_SUCH_CALL = "no push is stored for this workflow_id, node_id and call_id"
DELIVERY_PARAMS = ("destination", "state", "call_id", "after", "limit")
# How long a retry may wait for its commit, as a push does at most.
RETRY_COMMIT_SECONDS = 10.0


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


@asynccontextmanager
async def body_reader(request: web.Request) -> AsyncIterator[Reader]:
    """A connection for a read whose answer carries bodies: one such read at a time (storage/readers.py)."""
    async with request.app[READERS].connection(bodies=True) as conn:
        yield conn


def page_limit(params: Mapping[str, str]) -> int:
    text = params.get("limit")
    return DEFAULT_LIMIT if text is None else parse_int("limit", text, 1, MAX_LIMIT)


def page(items: list[dict[str, Any]], cursor: str, after: int) -> web.Response:
    """``next_after`` is the cursor of the last item, or on an empty page (nothing newer yet) the ``after``
    it was asked for: a client passes it back as it is, and never has a null to make sense of."""
    return json_response({"items": items, "next_after": items[-1][cursor] if items else after})


async def body_page(request: web.Request, items: list[dict[str, Any]], cursors: dict[str, Any]) -> web.StreamResponse:
    """A page whose items carry bodies (up to max_answer_bytes of them), with its ``cursors`` and ``more``.

    Written an item at a time: each write gives the event loop back to the pushes, where one answer of
    8 MiB would hold it for milliseconds."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"items":[')
    for n, item in enumerate(items):
        await response.write(b"," + orjson.dumps(item) if n else orjson.dumps(item))
    await response.write(b"]," + orjson.dumps(cursors)[1:])
    await response.write_eof()
    return response


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
    return page(items, "seq", push_filter.after)


@read_access
async def show_push(request: web.Request) -> web.Response:
    query_params(request, ())
    key = request.match_info
    async with body_reader(request) as conn:
        push = await queries.push_detail(conn, key["workflow_id"], key["node_id"], key["call_id"])
    if push is None:
        raise ApiError(404, "not_found", NO_SUCH_CALL)
    return json_response(push)


@read_access
async def list_versions(request: web.Request) -> web.StreamResponse:
    """Every body a call was received with, oldest first (version 0 is the first), a page at a time."""
    params = query_params(request, VERSION_PARAMS)
    after = None if "after" not in params else parse_int("after", params["after"], 0, MAX_SEQ)
    key = request.match_info
    async with body_reader(request) as conn:
        found = await queries.push_versions(
            conn, key["workflow_id"], key["node_id"], key["call_id"], after, page_limit(params),
            request.app[SETTINGS].max_answer_bytes,
        )  # fmt: skip
    if found is None:
        raise ApiError(404, "not_found", NO_SUCH_CALL)
    items, more = found
    # Without after the page starts at version 0, which every call has: only a page after one is empty.
    return await body_page(request, items, {"next_after": items[-1]["version"] if items else after or 0, "more": more})


@read_access
async def show_stats(request: web.Request) -> web.Response:
    query_params(request, ())
    async with reader(request) as conn:
        return json_response(await request.app[DATABASE].stats(conn))


@read_access
async def list_rejects(request: web.Request) -> web.StreamResponse:
    params = query_params(request, REJECT_PARAMS)
    after, before, newest_first = parse_cursor(params)
    limit = page_limit(params)
    max_bytes = request.app[SETTINGS].max_answer_bytes
    async with body_reader(request) as conn:
        items, more = await queries.page_rejects(
            conn, after, limit, max_bytes, params.get("reason"), before=before, newest_first=newest_first
        )
    if newest_first:
        return await body_page(request, items, {"next_before": items[-1]["id"] if items else None, "more": more})
    return await body_page(request, items, {"next_after": items[-1]["id"] if items else after, "more": more})


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
    return page(items, "id", job_filter.after)


@read_access
async def list_destinations(request: web.Request) -> web.Response:
    """Each destination's counts, last error and pause: every configured one, and any other with deliveries."""
    query_params(request, ())
    configured = [d.name for d in request.app[SETTINGS].forward]
    async with reader(request) as conn:
        return json_response({"items": await outbox.summary(conn, configured)})


@read_access
async def retry_delivery(request: web.Request) -> web.Response:
    """Send one delivery again now, from a fresh attempt count; its destination's pause ends with it."""
    query_params(request, ())
    same_origin(request)
    job_id = parse_int("id", request.match_info["id"], 1, MAX_SEQ)
    async with reader(request) as conn:
        if await outbox.job(conn, job_id) is None:
            raise ApiError(404, "not_found", "no delivery has this id")
    await request.app[WRITER].store(RetryRecord(job_id), wait=True, size=0, commit_within=RETRY_COMMIT_SECONDS)
    async with reader(request) as conn:
        job = await outbox.job(conn, job_id)
    if job is None:  # purged in between
        raise ApiError(404, "not_found", "no delivery has this id")
    return json_response(job)


def same_origin(request: web.Request) -> None:
    """A browser names the page behind a POST in ``Origin``: another site's page may not make this server
    send (without an api_token, the read rule lets any page on this machine's browser through)."""
    origin = request.headers.get("Origin")
    # The host only: behind a proxy that ends TLS, the page's scheme is not the one this server sees.
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise ApiError(403, "forbidden_origin", "a page from another origin may not change deliveries")
