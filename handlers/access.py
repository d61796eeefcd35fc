"""Who may push and who may read: every access rule of the server, with one way to compare a secret.

Pushing: the client's address (seen through trusted proxies only) must be in ``allow_ips`` when that is
set, and the path must carry the push token when one is set.

Reading (/api, /metrics, the event stream, the inspector): with ``api_token`` set, a request must carry
``Authorization: Bearer <api_token>``. Without one, only clients on loopback may read, so local
development needs no set-up while a server reachable from elsewhere has to be given a token. A request
that came through a proxy (it carries ``Forwarded`` or ``X-Forwarded-For``) is not treated as local even
when the proxy itself runs on loopback. Nor is one whose ``Host`` is not a loopback name or one of
``allowed_hosts``: a web page a developer visits could otherwise rebind its own name to 127.0.0.1 and
read the calls through the developer's browser (DNS rebinding).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from handlers.errors import ApiError, Handler
from plumbing.addresses import (
    IPNetwork,
    host_name,
    is_loopback,
    is_loopback_host,
    parse_address,
    parse_networks,
    within,
)
from plumbing.settings import Settings

INVALID_CLIENT = "invalid"
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="airudder-receiver"'}


def same_secret(given: str, expected: bytes) -> bool:
    """Constant time, so that the time of a refusal tells nothing about how much of a guess was right.

    Header and path text may hold bytes that are not UTF-8 (kept as surrogates); they are written out
    escaped rather than raising, and cannot match a secret, which has URL-safe characters only.
    """
    return hmac.compare_digest(given.encode("utf-8", "backslashreplace"), expected)


@dataclass(frozen=True)
class AccessPolicy:
    allowed: tuple[IPNetwork, ...]
    trusted_proxies: tuple[IPNetwork, ...]
    push_token: bytes
    api_token: bytes
    allowed_hosts: frozenset[str]

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            allowed=parse_networks(settings.allow_ips),
            trusted_proxies=parse_networks(settings.trusted_proxies),
            push_token=settings.push_token.encode(),
            api_token=settings.api_token.encode(),
            allowed_hosts=frozenset(host.lower() for host in settings.allowed_hosts),
        )

    # -- pushing --------------------------------------------------------------------------------

    def client(self, peer: str | None, forwarded_for: Iterable[str]) -> str | None:
        """The peer, unless it is a trusted proxy: then the right-most X-Forwarded-For hop that is not one.

        Hops left of an untrusted one are whatever the client chose to write, so they are never believed.
        A hop that is not an address ends the walk; the answer is then ``invalid``, which no allowlist
        matches, and the client's text is neither logged nor stored.
        """
        if peer is None:
            return None
        hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
        client = peer
        while hops and within(parse_address(client), self.trusted_proxies):
            client = hops.pop()
        address = parse_address(client)
        return str(address) if address is not None else INVALID_CLIENT

    def allows(self, client: str | None) -> bool:
        return not self.allowed or (client is not None and within(parse_address(client), self.allowed))

    def push_token_matches(self, given: str | None) -> bool:
        """``given``: the path segment after the push path, None for the push path itself."""
        if not self.push_token:
            return given is None
        return given is not None and same_secret(given, self.push_token)

    # -- reading --------------------------------------------------------------------------------

    def check_read(self, request: web.Request) -> None:
        """Raise 401 (or 403 for a foreign ``Host``) unless the request may read; see the module docstring."""
        if self.api_token:
            given = bearer_token(request)
            if given is None:
                raise ApiError(401, "unauthorized", "send Authorization: Bearer <api_token>", headers=_CHALLENGE)
            if not same_secret(given, self.api_token):
                raise ApiError(401, "unauthorized", "the bearer token is not the api_token", headers=_CHALLENGE)
            return
        if not is_loopback(request.remote) or any(name in request.headers for name in PROXY_HEADERS):
            raise ApiError(
                401, "unauthorized", "no api_token is set, so only clients on loopback may read", headers=_CHALLENGE
            )
        self.check_host(request)

    def check_host(self, request: web.Request) -> None:
        host = request.headers.get("Host", "")
        if not (is_loopback_host(host) or host_name(host) in self.allowed_hosts):
            raise ApiError(
                403,
                "forbidden_host",
                "without an api_token, reads must name this machine in Host (localhost, 127.0.0.1, [::1]) "
                "or a name in allowed_hosts",
            )

    def check_shell(self, request: web.Request) -> None:
        """The inspector's files hold no data: loopback peers get them (with a local ``Host`` when no token
        is set), others must pass the read rule."""
        if not is_loopback(request.remote):
            self.check_read(request)
        elif not self.api_token:
            self.check_host(request)


# Typed here, beside the policy, rather than in handlers.keys: the read rule below looks it up.
ACCESS = web.AppKey("access", AccessPolicy)


def bearer_token(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def read_access(handler: Handler) -> Handler:
    """Decorate a handler so that it runs only for requests that pass the read rule."""

    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        request.app[ACCESS].check_read(request)
        return await handler(request)

    return guarded
