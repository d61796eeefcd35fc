"""POST /push: read, check, hand to the writer, answer ``{}`` once stored (or queued)."""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiohttp import hdrs, web

from handlers.access import ACCESS
from handlers.content_encoding import decode_content
from handlers.errors import LOG_FIELDS, ApiError, http_error
from handlers.keys import METRICS, RECENT_STORES, SETTINGS, WRITER
from handlers.payload import InvalidPush, decode, to_record
from storage.records import Outcome, Record, RejectRecord, utc_now
from storage.writer import STORE_ERRORS

log = logging.getLogger("airudder_receiver.push")

EMPTY_OBJECT = b"{}"
# Headers worth keeping with a reject: enough to tell who sent it and how, nothing secret.
KEPT_HEADERS = (
    "Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "User-Agent", "X-Forwarded-For"
)  # fmt: skip


async def read_body(request: web.Request, limit: int, seconds: float) -> bytes:
    """The whole body within ``seconds``, or 413 as soon as it passes ``limit`` (chunked bodies have no
    length to check up front). The deadline keeps a client that trickles its body from holding a request."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "body_too_large", f"the body is {request.content_length} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        if request.content.is_eof():
            # The usual push: the whole body came with the head and is buffered. It cannot trickle, so it is
            # taken at once, with no deadline and no loop.
            body = request.content.read_nowait()
            if len(body) > limit:
                raise ApiError(413, "body_too_large", f"the body is more than the limit of {limit} bytes")
            return body
        async with asyncio.timeout(seconds):
            async for chunk in request.content.iter_any():
                size += len(chunk)
                if size > limit:
                    raise ApiError(413, "body_too_large", f"the body is more than the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, "body_timeout", f"the body did not arrive within {seconds:g}s") from None
    except web.RequestPayloadError:
        raise ApiError(400, "invalid_body", "the body's chunked framing does not decode") from None
    except ConnectionResetError:
        raise ApiError(400, "body_incomplete", "the connection closed before the whole body arrived") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def store(request: web.Request, record: Record, size: int, *, wait: bool | None = None) -> Outcome | None:
    """Queue a record of ``size`` bytes and, in ``committed`` mode (or with ``wait``), wait for its batch
    to commit. None means queued, not yet stored; the writer's errors say why it was not stored."""
    settings = request.app[SETTINGS]
    if wait is None:
        wait = settings.ack == "committed"
    return await request.app[WRITER].store(record, wait=wait, size=size, commit_within=settings.ack_timeout)


async def keep_reject(request: web.Request, error: ApiError, body: bytes | None) -> None:
    """Quarantine what we refuse, so that nothing sent to us is lost without trace.

    Raises the writer's error when the reject cannot be stored.
    """
    headers = {name: request.headers[name] for name in KEPT_HEADERS if name in request.headers}
    route = request.match_info.route.resource
    record = RejectRecord(
        received_at=utc_now(),
        remote=client_address(request),
        reason=error.code,
        detail=error.detail,
        # The route pattern, not the path: a push token must not end up in the database either.
        path=route.canonical if route is not None else request.path,
        headers=orjson.dumps(headers).decode(),
        body=body,
    )
    try:
        await store(request, record, len(body or b""))
    except STORE_ERRORS as exc:
        # The sender does not retry a 4xx, so the request would be lost: it gets the 503 instead, and the
        # refusal once storage works again.
        log.warning("could not keep a rejected request (%s); answering 503 (%s)", error.code, exc)
        raise


def client_address(request: web.Request) -> str | None:
    return request.app[ACCESS].client(request.remote, request.headers.getall("X-Forwarded-For", ()))


def admit(request: web.Request) -> None:
    """403 outside ``allow_ips``, 404 without the push token (or, with none set, for any path under the push
    path); logged with the client, not stored.

    Each refusal is counted in the metrics by its code, like every other refused push.
    """
    access = request.app[ACCESS]
    # Working out the client's address parses it (and any proxy hops): only when an allowlist needs it.
    if access.allowed:
        client = client_address(request)
        if not access.allows(client):
            request[LOG_FIELDS]["client"] = client
            raise ApiError(403, "forbidden", "this address may not push here")
    if not access.push_token_matches(request.match_info.get("token")):
        request[LOG_FIELDS]["client"] = client_address(request)
        raise ApiError(404, "not_found", "there is nothing at this path")


async def receive_push(request: web.Request) -> web.Response:
    try:
        response = await _take_push(request)
    except Exception as exc:
        error = http_error(exc, request.app[SETTINGS].retry_after)
        if error is None:
            raise
        if error.status >= 500:
            request.app[RECENT_STORES].record(False)
        request.app[METRICS].count_refusal(error.status, error.code)
        raise error from None
    request.app[RECENT_STORES].record(True)
    return response


async def _take_push(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    fields = request[LOG_FIELDS]
    admit(request)
    body: bytes | None = None
    try:
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout)
        body = decode_content(body, request.headers.getall(hdrs.CONTENT_ENCODING, ()), settings.max_body_bytes)
        record = to_record(body, decode(body), utc_now())
    except (ApiError, InvalidPush) as exc:
        error = http_error(exc, settings.retry_after)
        assert error is not None  # both are mapped
        # A body past the limit is not kept, however small it arrived compressed.
        await keep_reject(request, error, None if error.code == "body_too_large" else body)
        raise error from None
    fields["key"] = "/".join(record.key)
    outcome = await store(request, record, len(body))
    fields["outcome"] = outcome.value if outcome else "queued"
    if record.warnings:
        fields["warned"] = True
    return web.Response(body=EMPTY_OBJECT, content_type="application/json")
