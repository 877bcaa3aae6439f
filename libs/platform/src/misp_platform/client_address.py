"""The client's address: the one module that reads a request's peer and its forwarded headers.

Behind the gateway a service's direct peer is the gateway. `X-Forwarded-For` (and
`X-Forwarded-Proto`) are believed only from a trusted proxy: a network of `MISP_TRUSTED_PROXIES`
(`ServiceSettings.trusted_proxies`, loopback by default), which `create_app` hands to
`trust_proxies` once. The client is then found by walking `X-Forwarded-For` from the right,
skipping the hops that are trusted proxies themselves: the first hop that is not one is the
client (the rightmost untrusted address). Entries left of it are whatever the client chose to
send. A hop that is not an address ends the walk: the nearest hop read so far answers. Nothing a
header holds can make this raise.

uvicorn's own forwarded handling is off (`roles.run_api`): it would rewrite the peer before this
module sees it, with rules of its own (a malformed hop became the client), and the in-process
tests, which have no uvicorn, would not run what production runs.

Everything that needs an address (the audit's `ip`, authkeys' allowed IPs, the login and
`users/forgot` limits, the logs) takes `client_address(request)`; tests/lint/test_client_address.py
keeps every other module from reading the peer or the headers.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from misp_platform.addresses import (
    LOOPBACK,
    Address,
    Network,
    is_trusted,
    parse_address,
    parse_networks,
    render_networks,
)

__all__ = [
    "LOOPBACK",
    "Address",
    "ForwardedProtoMiddleware",
    "Network",
    "client_address",
    "client_ip",
    "forwarding_headers",
    "is_trusted",
    "parse_address",
    "parse_networks",
    "render_networks",
    "scope_client_address",
    "trust_proxies",
    "trusted_proxies",
]

_STATE_KEY = "client_address"
_SCHEMES = {"http": "http", "https": "https"}
_WS_SCHEMES = {"http": "ws", "https": "wss"}


_trusted: tuple[Network, ...] = parse_networks(LOOPBACK)


def trust_proxies(networks: Iterable[Network]) -> None:
    """Set the process's trusted proxies (create_app does, from the settings)."""
    global _trusted
    _trusted = tuple(networks)


def trusted_proxies() -> tuple[Network, ...]:
    return _trusted


def client_ip(peer: str | None, forwarded_for: str | None,
              trusted: Sequence[Network] | None = None) -> str | None:
    """The client's address from the direct peer and `X-Forwarded-For` (all its lines joined
    by commas): the peer unless it is a trusted proxy, else the rightmost hop that is not one
    (`trusted`: the process's trusted proxies when None). A peer that is not an address (a test
    client's name) is returned as it is; None when there is no peer."""
    if peer is None:
        return None
    networks = _trusted if trusted is None else trusted
    current = parse_address(peer)
    if current is None:
        return peer
    if not forwarded_for or not is_trusted(current, networks):
        return str(current)
    for hop in reversed(forwarded_for.split(",")):
        if not hop.strip():
            continue
        address = parse_address(hop)
        if address is None:
            break
        current = address
        if not is_trusted(address, networks):
            break
    return str(current)


@functools.lru_cache(maxsize=4096)
def _known_client_ip(peer: str | None, forwarded_for: str | None,
                     trusted: tuple[Network, ...]) -> str | None:
    """`client_ip`, remembered: a gateway's few peers and clients are parsed once, not on
    every request."""
    return client_ip(peer, forwarded_for, trusted)


@functools.lru_cache(maxsize=4096)
def _trusted_peer(peer: str, trusted: tuple[Network, ...]) -> bool:
    """Whether the direct peer is a trusted proxy (remembered, as `_known_client_ip`)."""
    address = parse_address(peer)
    return address is not None and is_trusted(address, trusted)


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    if not client:
        return None
    host = client[0]
    return host if isinstance(host, str) else None


def _forwarded_for(headers: Headers) -> str | None:
    values = headers.getlist("x-forwarded-for")
    return ",".join(values) if values else None


def scope_client_address(scope: Scope) -> str | None:
    """`client_address` of a raw ASGI scope (computed once per request, kept in its state)."""
    state = scope.setdefault("state", {})
    if _STATE_KEY not in state:
        state[_STATE_KEY] = _known_client_ip(_peer(scope), _forwarded_for(Headers(scope=scope)),
                                             _trusted)
    value = state[_STATE_KEY]
    return value if isinstance(value, str) else None


def client_address(request: HTTPConnection) -> str | None:
    """The address of the client behind this request (None when the server gave no peer)."""
    return scope_client_address(request.scope)


def forwarding_headers(request: HTTPConnection) -> dict[str, str]:
    """What a proxy in front of the next hop sends on for this request's client (the web
    console calling the API as its browser): the client's address, as this module found it."""
    address = client_address(request)
    return {"X-Forwarded-For": address} if address else {}


class ForwardedProtoMiddleware:
    """Pure ASGI: from a trusted proxy, `X-Forwarded-Proto: https` (or `http`) becomes the
    request's scheme, as uvicorn's proxy handling did (the `Secure` cookie, redirects)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and _trusted_peer(_peer(scope) or "", _trusted):
            proto = Headers(scope=scope).get("x-forwarded-proto", "").strip().lower()
            schemes = _WS_SCHEMES if scope["type"] == "websocket" else _SCHEMES
            if proto in schemes:
                scope["scheme"] = schemes[proto]
        await self.app(scope, receive, send)
