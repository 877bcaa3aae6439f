"""The console reaches the gateway by its container name (`https://gateway:8443`) while the
gateway's certificate is for the name clients use: CONSOLE_GATEWAY_TLS_NAME is the name the
handshake sends (SNI) and verifies, CONSOLE_GATEWAY_CA the certificate it trusts (the gateway's
own, whoever signed it)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from starlette.requests import Request

from console.gateway import Gateway
from console.settings import ConsoleSettings

NAME = "misp.example.test"


def _browser_request() -> Request:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    return Request({"type": "http", "method": "GET", "headers": [], "path": "/",
                    "client": ("192.0.2.7", 50000)}, receive)


def test_the_tls_name_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSOLE_GATEWAY_TLS_NAME", NAME)
    assert ConsoleSettings().gateway_tls_name == NAME
    monkeypatch.delenv("CONSOLE_GATEWAY_TLS_NAME")
    assert ConsoleSettings().gateway_tls_name is None


@pytest.mark.parametrize(("tls_name", "expected"), [(NAME, {"sni_hostname": NAME}), (None, {})])
async def test_every_call_carries_the_tls_name_as_the_sni_extension(
        tls_name: str | None, expected: dict[str, str]) -> None:
    seen: list[dict[str, object]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions))
        return httpx.Response(200, json={"ok": True})

    gateway = Gateway("https://gateway:8443", timeout_s=5, tls_name=tls_name,
                      transport=httpx.MockTransport(answer))
    try:
        browser = _browser_request()
        assert await gateway.get(browser, "/users/view/me") == {"ok": True}
        await gateway.call(browser, "POST", "/admin/users/add", json={}, csrf="t")
    finally:
        await gateway.aclose()
    assert len(seen) == 2
    for extensions in seen:
        assert {k: v for k, v in extensions.items() if k == "sni_hostname"} == expected


# ---- a real handshake: the gateway's certificate, signed by a CA the console does not know ----


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the gateway's certificate, its key): a leaf for NAME only, signed by a private CA that
    is not in the file the console is given."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "some private CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("gateway-tls")
    (directory / "tls.crt").write_bytes(_pem(leaf))
    (directory / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return directory / "tls.crt", directory / "tls.key"


@pytest.fixture
async def https_gateway(certificate: tuple[Path, Path]) -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTPS server on 127.0.0.1 with that certificate, answering every request with `{}`;
    the second item lists the SNI names the clients sent."""
    names: list[str] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)

    def sni(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name or "")

    context.sni_callback = sni

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}", names
    finally:
        server.close()
        await server.wait_closed()


async def test_the_console_verifies_the_gateway_s_own_certificate_for_the_tls_name(
        certificate: tuple[Path, Path], https_gateway: tuple[str, list[str]]) -> None:
    url, names = https_gateway
    gateway = Gateway(url, timeout_s=5, ca=str(certificate[0]), tls_name=NAME)
    try:
        assert await gateway.get(_browser_request(), "/users/view/me") == {}
    finally:
        await gateway.aclose()
    assert names == [NAME]


@pytest.mark.parametrize("tls_name", [None, "other.example.test"])
async def test_without_the_certificate_s_name_the_handshake_fails(
        certificate: tuple[Path, Path], https_gateway: tuple[str, list[str]],
        tls_name: str | None) -> None:
    url, _names = https_gateway
    gateway = Gateway(url, timeout_s=5, ca=str(certificate[0]), tls_name=tls_name)
    try:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await gateway.get(_browser_request(), "/users/view/me")
    finally:
        await gateway.aclose()


async def test_without_the_certificate_the_handshake_fails(
        https_gateway: tuple[str, list[str]]) -> None:
    url, _names = https_gateway
    gateway = Gateway(url, timeout_s=5, tls_name=NAME)  # the system's CAs only
    try:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await gateway.get(_browser_request(), "/users/view/me")
    finally:
        await gateway.aclose()
