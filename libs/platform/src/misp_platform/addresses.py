"""Addresses and networks as the settings and the headers write them (pure, stdlib only).

What the request-side module (client_address.py) and the abuse detector's pure domain
(audit.domain.abuse) share: one parser of an address, one test of membership.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: Final = "127.0.0.0/8,::1/128"
# Longer than any address with a port and a zone: not an address, not parsed.
MAX_HOP = 64


def parse_networks(value: str | Iterable[str]) -> tuple[Network, ...]:
    """`"10.0.0.0/8, ::1"` (or the entries as a list) as networks; a bare address is its own
    network. A bad entry raises ValueError naming it (a setting, checked when it is read)."""
    entries = value.split(",") if isinstance(value, str) else value
    networks: list[Network] = []
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network in CIDR notation: {text!r}") from exc
    return tuple(networks)


def render_networks(networks: Iterable[Network]) -> str:
    return ",".join(str(network) for network in networks)


def parse_address(value: str) -> Address | None:
    """An address as a header or a peer gives it: bare, `v4:port` or `[v6]:port`; an
    IPv4-mapped IPv6 address as its IPv4 address. None for anything else."""
    text = value.strip()
    if not text or len(text) > MAX_HOP:
        return None
    port: str | None = None
    if text.startswith("["):
        text, bracket, rest = text[1:].partition("]")
        if not bracket:
            return None
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
    elif text.count(":") == 1:
        text, port = text.split(":")
    if port is not None and not (port.isascii() and port.isdigit()):
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address.version == network.version and address in network
               for network in networks)
