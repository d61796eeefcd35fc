"""What an address is and which ones are this machine: the one place that reads addresses as text."""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Host names a listener may bind to that only this machine can reach.
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
# Listening on "every address" is reached from this machine through loopback.
WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def parse_address(text: str) -> IPAddress | None:
    """An address as a peer or a proxy writes it: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``,
    ``[2001:db8::1]:5678``. IPv4 addresses mapped into IPv6 count as IPv4 (a dual-stack socket reports
    IPv4 peers as ``::ffff:a.b.c.d``)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(text: str | None) -> bool:
    address = parse_address(text) if text else None
    return address is not None and address.is_loopback
