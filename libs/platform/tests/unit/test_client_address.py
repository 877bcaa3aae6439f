"""The client's address behind trusted proxies (issue 15, item 3), without I/O: the rightmost
X-Forwarded-For hop that is not a trusted proxy, believed only from a trusted peer."""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from misp_platform.client_address import (
    LOOPBACK,
    ForwardedProtoMiddleware,
    client_ip,
    parse_address,
    parse_networks,
    scope_client_address,
    trust_proxies,
    trusted_proxies,
)
from misp_platform.config import ServiceSettings

DEFAULT = parse_networks(LOOPBACK)
# Compose-like: the gateway's network and loopback.
GATEWAY_NET = parse_networks("10.203.97.0/24,127.0.0.0/8,::1/128")


@pytest.fixture
def trusting() -> Iterator[None]:
    """Restore the process's trusted proxies after a test that changes them."""
    before = trusted_proxies()
    yield
    trust_proxies(before)


def test_the_default_trusts_loopback_only() -> None:
    assert trusted_proxies() == DEFAULT
    assert ServiceSettings().trusted_proxy_networks == DEFAULT
    assert client_ip("127.0.0.1", "198.51.100.7") == "198.51.100.7"
    assert client_ip("127.8.9.1", "198.51.100.7") == "198.51.100.7"
    assert client_ip("::1", "198.51.100.7") == "198.51.100.7"


def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    assert client_ip("203.0.113.9", "10.0.0.1") == "203.0.113.9"
    assert client_ip("203.0.113.9", "127.0.0.1") == "203.0.113.9"
    assert client_ip("10.203.97.99", "198.51.100.7", DEFAULT) == "10.203.97.99"
    assert client_ip("203.0.113.9", "198.51.100.7", GATEWAY_NET) == "203.0.113.9"


def test_a_trusted_peer_without_forwarded_for_is_the_client() -> None:
    assert client_ip("127.0.0.1", None) == "127.0.0.1"
    assert client_ip("127.0.0.1", "") == "127.0.0.1"
    assert client_ip("127.0.0.1", " , ,") == "127.0.0.1"
    assert client_ip(None, "198.51.100.7") is None


def test_spoofed_entries_left_of_the_first_untrusted_hop_are_ignored() -> None:
    # The gateway appends the address it saw; what the client sent stays on the left.
    assert client_ip("127.0.0.1", "10.9.9.9, 198.51.100.7") == "198.51.100.7"
    assert client_ip("127.0.0.1", "127.0.0.1, 198.51.100.7") == "198.51.100.7"
    assert client_ip("10.203.97.10", "1.1.1.1, 10.203.97.3, 198.51.100.7",
                     GATEWAY_NET) == "198.51.100.7"


def test_a_chain_of_trusted_proxies_is_walked_through() -> None:
    # An ingress in front of the gateway: both trusted, the client is the hop before them.
    assert client_ip("10.203.97.10", "6.6.6.6, 198.51.100.7, 10.203.97.4",
                     GATEWAY_NET) == "198.51.100.7"
    assert client_ip("::1", "198.51.100.7, 127.0.0.1") == "198.51.100.7"
    # Only proxies all the way: the leftmost one is as near as the client gets.
    assert client_ip("10.203.97.10", "10.203.97.5, 10.203.97.4", GATEWAY_NET) == "10.203.97.5"


def test_ipv6_clients_peers_and_networks() -> None:
    assert client_ip("::1", "2001:db8::7") == "2001:db8::7"
    assert client_ip("::1", "[2001:db8::7]:443") == "2001:db8::7"
    assert client_ip("2001:db8::1", "198.51.100.7") == "2001:db8::1"
    six = parse_networks("fd00:1::/64")
    assert client_ip("fd00:1::10", "2001:db8::9, 2001:db8::7, fd00:1::3", six) == "2001:db8::7"
    assert client_ip("fd00:2::10", "2001:db8::7", six) == "fd00:2::10"
    # An IPv4 peer seen through a dual-stack socket is its IPv4 address.
    assert client_ip("::ffff:127.0.0.1", "198.51.100.7") == "198.51.100.7"
    assert client_ip("::ffff:203.0.113.9", "198.51.100.7") == "203.0.113.9"


def test_ports_are_dropped_and_malformed_hops_end_the_walk() -> None:
    assert client_ip("127.0.0.1", "198.51.100.7:5123") == "198.51.100.7"
    # The nearest hop read so far answers: never an address from beyond garbage.
    for garbage in ("unknown", "_hidden", "999.1.1.1", "198.51.100.7:http", "[::1", "1.2.3.4:",
                    "\uff12.\uff12.\uff12.\uff12", "<script>", "x" * 5000, "1.2.3.4\x00",
                    "'; DROP TABLE x"):
        assert client_ip("127.0.0.1", f"6.6.6.6, {garbage}") == "127.0.0.1", garbage
        assert client_ip("127.0.0.1", f"{garbage}, 198.51.100.7") == "198.51.100.7", garbage
        assert client_ip("10.203.97.10", f"6.6.6.6, {garbage}, 10.203.97.4",
                         GATEWAY_NET) == "10.203.97.4", garbage
    # A peer that is no address (a test client's name) is what the server says it is.
    assert client_ip("testclient", "198.51.100.7") == "testclient"
    assert parse_address("") is None and parse_address("1.2.3.4:80") is not None


def test_no_header_makes_it_raise() -> None:
    rng = random.Random(15)
    pieces = ["127.0.0.1", "::1", "198.51.100.7", "[", "]", ":", ",", " ", "%", "/", ".", "\x00",
              "ffff", "999", "\uff11", "é", "\r\n"]
    for _ in range(2000):
        peer = rng.choice([None, "127.0.0.1", "::1", "".join(rng.choices(pieces, k=3))])
        header = "".join(rng.choices(pieces, k=rng.randint(0, 12)))
        answer = client_ip(peer, header)
        assert answer is None if peer is None else isinstance(answer, str)
        if answer is not None and parse_address(peer or "") is not None:
            assert parse_address(answer) is not None


def test_the_setting_is_a_checked_list_of_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISP_TRUSTED_PROXIES", " 10.203.97.10/32 , fd00::/8")
    settings_ = ServiceSettings()
    assert settings_.trusted_proxies == "10.203.97.10/32,fd00::/8"
    assert [str(n) for n in settings_.trusted_proxy_networks] == ["10.203.97.10/32", "fd00::/8"]
    assert ServiceSettings(trusted_proxies="").trusted_proxy_networks == ()
    assert ServiceSettings(trusted_proxies="10.1.2.3").trusted_proxies == "10.1.2.3/32"
    with pytest.raises(ValidationError, match="not a network"):
        ServiceSettings(trusted_proxies="10.0.0.0/8,gateway")


def test_the_processs_networks_are_those_create_app_sets(trusting: None) -> None:
    trust_proxies(GATEWAY_NET)
    assert client_ip("10.203.97.10", "198.51.100.7") == "198.51.100.7"
    trust_proxies(())
    assert client_ip("127.0.0.1", "198.51.100.7") == "127.0.0.1"


def _scope(peer: tuple[str, int] | None, *headers: tuple[bytes, bytes]) -> Scope:
    return {"type": "http", "client": peer, "headers": list(headers)}


def test_every_forwarded_for_line_counts_and_the_answer_is_kept() -> None:
    scope = _scope(("127.0.0.1", 4000), (b"x-forwarded-for", b"6.6.6.6"),
                   (b"x-forwarded-for", b"198.51.100.7"))
    assert scope_client_address(scope) == "198.51.100.7"
    assert scope["state"]["client_address"] == "198.51.100.7"
    assert scope_client_address(_scope(None, (b"x-forwarded-for", b"198.51.100.7"))) is None


async def _scheme_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["scheme"].encode()})


@pytest.mark.parametrize(("peer", "proto", "scheme"), [
    ("127.0.0.1", "https", "https"), ("127.0.0.1", "HTTPS ", "https"),
    ("127.0.0.1", "gopher", "http"), ("203.0.113.9", "https", "http")])
async def test_forwarded_proto_counts_from_a_trusted_peer_only(peer: str, proto: str,
                                                               scheme: str) -> None:
    transport = httpx.ASGITransport(app=ForwardedProtoMiddleware(_scheme_app),
                                    client=(peer, 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        response = await client.get("/", headers={"X-Forwarded-Proto": proto})
    assert response.text == scheme
