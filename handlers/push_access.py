"""Who may push: the client's address (seen through trusted proxies only), the allowlist, the push token."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from addresses import IPAddress, parse_address
from settings import IPNetwork, Settings, parse_networks

INVALID_CLIENT = "invalid"


def _within(address: IPAddress | None, networks: tuple[IPNetwork, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


@dataclass(frozen=True)
class AccessPolicy:
    allowed: tuple[IPNetwork, ...]
    trusted_proxies: tuple[IPNetwork, ...]
    token: bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            allowed=parse_networks("allow_ips", settings.allow_ips),
            trusted_proxies=parse_networks("trusted_proxies", settings.trusted_proxies),
            token=settings.push_token.encode(),
        )

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
        while hops and _within(parse_address(client), self.trusted_proxies):
            client = hops.pop()
        address = parse_address(client)
        return str(address) if address is not None else INVALID_CLIENT

    def allows(self, client: str | None) -> bool:
        return not self.allowed or (client is not None and _within(parse_address(client), self.allowed))

    def token_matches(self, given: str) -> bool:
        """Constant time, so that the time of a refusal tells nothing about how much of a guess was right."""
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.token)
