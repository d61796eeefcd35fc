"""Domain errors and the one middleware that turns every error into the same JSON shape."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

log = logging.getLogger("airudder_receiver.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Filled by handlers so that the middleware writes one log line saying what happened.
LOG_FIELDS = web.RequestKey("log_fields", dict[str, Any])


class ApiError(Exception):
    """An error answered as ``{"error": code, "detail": detail}`` with ``status``."""

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


def error_response(
    status: int,
    code: str,
    detail: str,
    retry_after: int | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> web.Response:
    headers = dict(extra_headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return web.Response(
        status=status,
        body=orjson.dumps({"error": code, "detail": detail}),
        content_type="application/json",
        headers=headers,
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
_HTTP_DETAILS = {404: "there is nothing at this path", 405: "{method} is not allowed at this path"}


@web.middleware
async def errors_and_access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map errors to JSON and log one line per request with what the handler recorded."""
    started = time.perf_counter()
    fields: dict[str, Any] = {}
    request[LOG_FIELDS] = fields
    try:
        response = await handler(request)
    except ApiError as exc:
        fields.setdefault("error", exc.code)
        response = error_response(exc.status, exc.code, exc.detail, exc.retry_after, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        fields.setdefault("error", code)
        detail = _HTTP_DETAILS.get(exc.status, "{reason}").format(reason=exc.reason, method=request.method)
        response = error_response(exc.status, code, detail)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        fields["error"] = "internal"
        response = error_response(500, "internal", "the server failed to handle this request")
    fields["status"] = response.status
    fields["ms"] = round((time.perf_counter() - started) * 1000, 2)
    log.info("%s %s", request.method, request.path, extra={"fields": fields})
    return response
