"""The edge: domain errors mapped to HTTP statuses in one table, and the one middleware that turns every
error into the same JSON shape."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from handlers.keys import METRICS, REQUEST_LINES, SETTINGS
from handlers.payload import InvalidPush
from storage.filters import FilterError
from storage.readers import ReadersBusy
from storage.writer import UNAVAILABLE_CAUSES, CommitTimeout, WriteFailed, WriterUnavailable

log = logging.getLogger("airudder_receiver.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Filled by handlers so that the middleware writes one log line saying what happened.
LOG_FIELDS = web.RequestKey("log_fields", dict[str, Any])


class ApiError(Exception):
    """An error answered as ``{"error": code, "detail": detail}`` with ``status``.

    Handlers raise it for what only HTTP knows (a body too large, a missing token); everything the
    domain raises is mapped to one in ``http_error``."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after
        self.headers = headers


# A push that fails its checks: unreadable JSON is 400, a readable push without a usable identity is 422.
INVALID_PUSH_STATUS = {
    "invalid_json": 400, "not_an_object": 400, "missing_field": 422, "invalid_field": 422, "duplicate_key": 422
}  # fmt: skip
# Every code a push can be answered with besides 200, so that the metrics show each at 0 before it happens:
# refusals (4xx; those of handlers.push's own checks follow the payload's), and the 503s.
PUSH_REJECT_CODES = (
    "forbidden", "not_found", "body_too_large", "body_timeout", "invalid_body", "body_incomplete",
    "unsupported_encoding", *INVALID_PUSH_STATUS,
)  # fmt: skip
PUSH_UNAVAILABLE_CODES = (*UNAVAILABLE_CAUSES, "commit_timeout", "storage_error")


def http_error(exc: Exception, retry_after: int) -> ApiError | None:
    """The answer for ``exc``, or None when it is not an error the domain raises on purpose.

    What the storage could not do now is a 503 with ``Retry-After``: AIRudder's sender then retries.
    """
    match exc:
        case ApiError():
            return exc
        case InvalidPush():
            return ApiError(INVALID_PUSH_STATUS[exc.code], exc.code, exc.detail)
        case FilterError():
            return ApiError(400, "invalid_parameter", str(exc))
        case WriterUnavailable():
            detail = f"the push was not taken ({exc.cause.replace('_', ' ')}); retry later"
            return ApiError(503, exc.cause, detail, retry_after)
        case CommitTimeout():
            return ApiError(503, "commit_timeout", f"{exc}; retry later", retry_after)
        case WriteFailed():
            return ApiError(503, "storage_error", "the database did not take the push; retry later", retry_after)
        case ReadersBusy():
            return ApiError(503, "readers_busy", f"{exc}; retry later", retry_after)
    return None


def error_response(error: ApiError) -> web.Response:
    headers = dict(error.headers or {})
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return web.Response(
        status=error.status,
        body=orjson.dumps({"error": error.code, "detail": error.detail}),
        content_type="application/json",
        headers=headers,
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
_HTTP_DETAILS = {404: "there is nothing at this path", 405: "{method} is not allowed at this path; use {allowed}"}

# Longer paths are cut short in the request's log line.
MAX_LOGGED_PATH = 200

# Handlers whose successful answers are logged at debug only: what is polled (scrapes, probes) or fetched
# with every page load. Once a second a line each would be 86,400 lines a day saying nothing.
_QUIET: set[Handler] = set()


def quiet(handler: Handler) -> Handler:
    """Mark a route's handler as polled: its 2xx and 3xx answers are logged at debug, its errors as usual."""
    _QUIET.add(handler)
    return handler


def _from_aiohttp(exc: web.HTTPException, method: str) -> ApiError:
    """aiohttp's own 404, 405 and 413 in our JSON shape; a 405 keeps the ``Allow`` header RFC 9110 requires."""
    code = _HTTP_CODES.get(exc.status, "http_error")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        detail = _HTTP_DETAILS[405].format(method=method, allowed=" or ".join(allowed))
        return ApiError(405, code, detail, headers={"Allow": ",".join(allowed)})
    return ApiError(exc.status, code, _HTTP_DETAILS.get(exc.status, "{reason}").format(reason=exc.reason))


@web.middleware
async def errors_and_access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map errors to JSON, log one line per request with what the handler recorded, and time the request
    for the metrics by its route. One middleware, not one per job: each costs a coroutine per request."""
    started = time.perf_counter()
    route = _route(request)  # matched before any middleware runs
    fields: dict[str, Any] = {}
    request[LOG_FIELDS] = fields
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            answer = _from_aiohttp(exc, request.method)
            fields.setdefault("error", answer.code)
            response = error_response(answer)
        except Exception as exc:
            error = http_error(exc, request.app[SETTINGS].retry_after)
            if error is None:
                log.exception("unexpected error on %s %s", request.method, request.path)
                error = ApiError(500, "internal", "the server failed to handle this request")
            fields.setdefault("error", error.code)
            response = error_response(error)
        fields["status"] = response.status
        failed = response.status >= 400
        if not failed and request.match_info.handler in _QUIET:
            _log_request(logging.DEBUG, request, fields, started)
        elif log.isEnabledFor(logging.INFO):
            lines = request.app[REQUEST_LINES]
            if lines.take(failed):
                _log_request(logging.INFO, request, fields, started)
            else:
                lines.hold((request.method, route, fields.get("outcome", fields.get("error", response.status))))
        return response
    finally:
        request.app[METRICS].observe_request(route, time.perf_counter() - started)


def _log_request(level: int, request: web.Request, fields: dict[str, Any], started: float) -> None:
    """The request's line, its time in milliseconds worked out only when the line is written."""
    if log.isEnabledFor(level):
        fields["ms"] = round((time.perf_counter() - started) * 1000, 2)
        path = request.path
        if len(path) > MAX_LOGGED_PATH:  # a client's 8 KB path would be 8 KB of log a request
            path = f"{path[:MAX_LOGGED_PATH]}... ({len(path)} characters)"
        log.log(level, "%s %s", request.method, path, extra={"fields": fields})


def _route(request: web.Request) -> str:
    """The route pattern, not the path: bounded label values, and no push token in them."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
