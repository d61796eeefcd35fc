"""What an address is and which ones are this machine: the one place that reads addresses as text."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Host names a listener may bind to that only this machine can reach.
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
# Listening on "every address" is reached from this machine through loopback.
WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def local_url(scheme: str, host: str, port: int) -> str:
    """Where a client on this machine reaches a listener bound to ``host``: ``http://127.0.0.1:8080``."""
    host = WILDCARD_TO_LOOPBACK.get(host, host)
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


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


def host_name(host_header: str) -> str:
    """The name in a ``Host`` header without its port, lower case: ``[::1]:8080`` -> ``::1``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def is_loopback_host(host_header: str) -> bool:
    """Whether a ``Host`` header names this machine: ``localhost`` or a loopback address, any port."""
    name = host_name(host_header)
    return name == "localhost" or is_loopback(name)


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Each text as a network (a single address is a network of one); ValueError names the first bad one."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr))
        except ValueError:
            raise ValueError(
                f"{cidr!r}, which is not an address or a network such as 10.0.0.0/8 (with no bits set after the prefix)"
            ) from None
    return tuple(networks)


def within(address: IPAddress | None, networks: tuple[IPNetwork, ...]) -> bool:
    return address is not None and any(address in network for network in networks)
