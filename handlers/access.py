"""Who may read: the one rule for /api and every other read-only page.

With ``api_token`` set, a request must carry ``Authorization: Bearer <api_token>``. Without one, only
clients on loopback may read, so local development needs no set-up while a server reachable from
elsewhere has to be given a token. A request that came through a proxy (it carries ``Forwarded`` or
``X-Forwarded-For``) is not treated as local even when the proxy itself runs on loopback.
"""

from __future__ import annotations

import functools
import hmac

from aiohttp import web

from addresses import is_loopback
from handlers.errors import ApiError, Handler
from handlers.keys import SETTINGS

PROXY_HEADERS = ("Forwarded", "X-Forwarded-For")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="airudder-receiver"'}


def bearer_token(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def check_read_access(request: web.Request) -> None:
    """Raise 401 unless the request may read; see the module docstring for the rule."""
    expected = request.app[SETTINGS].api_token
    if expected:
        given = bearer_token(request)
        if given is None:
            raise ApiError(401, "unauthorized", "send Authorization: Bearer <api_token>", headers=_CHALLENGE)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "the bearer token is not the api_token", headers=_CHALLENGE)
        return
    if not is_loopback(request.remote) or any(name in request.headers for name in PROXY_HEADERS):
        raise ApiError(
            401, "unauthorized", "no api_token is set, so only clients on loopback may read", headers=_CHALLENGE
        )


def read_access(handler: Handler) -> Handler:
    """Decorate a handler so that it runs only for requests that pass ``check_read_access``."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        check_read_access(request)
        return await handler(request)

    return guarded
