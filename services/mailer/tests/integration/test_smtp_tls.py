"""SMTP delivery to a relay that wants TLS and a login (aiosmtpd with a certificate of a private CA
made here): STARTTLS and implicit TLS with the server's certificate verified, AUTH, a refused
login kept for a retry (soft bounce), and the diagnostics probe on the same settings."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailer.adapters.smtp import Connection
from mailer.bootstrap import diagnose_smtp, smtp_config
from mailer.settings import MailerSettings

from ..support import free_port

# aiosmtpd warns about the SMTPS relay's login without STARTTLS (its TLS is below aiosmtpd).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

USER, PASSWORD = "relay-user", "relay-s3cret"
MESSAGE = b"From: misp@acme.test\r\nTo: u@example.test\r\nSubject: Hi\r\n\r\nHello.\r\n"


@dataclass
class CA:
    """A private CA (its PEM file) and a server context with a certificate it signed for
    localhost and 127.0.0.1."""

    pem: Path
    server_context: ssl.SSLContext


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    home = tmp_path_factory.mktemp("smtp-ca")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name("Test relay CA"))
               .issuer_name(_name("Test relay CA")).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_cert_sign=True, crl_sign=True,
                   content_commitment=False, key_encipherment=False, data_encipherment=False,
                   key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost"))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = home / "ca.pem"
    pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (home / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (home / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(home / "server.pem", home / "server.key")
    return CA(pem, context)


@dataclass
class Relay:
    """What the relay saw: each message with whether it came over TLS and after a login."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.received.append({"tls": tls,
                              "authenticated": bool(session.authenticated),
                              "content": envelope.content})
        return "250 OK"


def _login(server: Any, session: Any, envelope: Any, mechanism: str,
           auth_data: Any) -> AuthResult:
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode()
          and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # not handled: the relay answers 535 itself


def _run(relay: Relay, **options: Any) -> Iterator[Relay]:
    controller = Controller(relay, hostname="127.0.0.1", port=relay.port,
                            authenticator=_login, auth_required=True, **options)
    controller.start()
    try:
        yield relay
    finally:
        controller.stop()


@pytest.fixture
def starttls_relay(ca: CA) -> Iterator[Relay]:
    """Plain at first; STARTTLS is required before anything else, a login before MAIL."""
    yield from _run(Relay(free_port()), tls_context=ca.server_context, require_starttls=True)


@pytest.fixture
def smtps_relay(ca: CA) -> Iterator[Relay]:
    """TLS from the first byte (SMTPS). aiosmtpd does not see TLS made below it, so it is told
    that a login needs no STARTTLS here."""
    yield from _run(Relay(free_port()), ssl_context=ca.server_context, auth_require_tls=False)


def settings(port: int, **over: Any) -> MailerSettings:
    given: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": port,
                             "smtp_username": USER, "smtp_password": PASSWORD,
                             "smtp_timeout_s": 5, **over}
    return MailerSettings(**given)


async def send(s: MailerSettings) -> Any:
    connection = Connection(smtp_config(s))
    try:
        return await asyncio.to_thread(connection.send, "misp@acme.test", "u@example.test",
                                       MESSAGE)
    finally:
        connection.close()


async def test_starttls_with_the_relays_ca_and_a_login_delivers(
        starttls_relay: Relay, ca: CA) -> None:
    result = await send(settings(starttls_relay.port, smtp_starttls=True,
                                 smtp_ca_file=str(ca.pem)))
    assert (result.outcome, result.error) == ("sent", None)
    [got] = starttls_relay.received
    assert got["tls"] and got["authenticated"] and b"Hello." in got["content"]


async def test_implicit_tls_delivers(smtps_relay: Relay, ca: CA) -> None:
    result = await send(settings(smtps_relay.port, smtp_implicit_tls=True,
                                 smtp_ca_file=str(ca.pem)))
    assert result.outcome == "sent", result.error
    assert [(g["tls"], g["authenticated"]) for g in smtps_relay.received] == [(True, True)]
    unknown_ca = await send(settings(smtps_relay.port, smtp_implicit_tls=True))
    assert unknown_ca.outcome == "retry" and "CERTIFICATE_VERIFY_FAILED" in unknown_ca.error
    assert len(smtps_relay.received) == 1


async def test_a_certificate_of_an_unknown_ca_is_refused_and_nothing_is_sent(
        starttls_relay: Relay) -> None:
    # The system's CAs do not know the relay's: verified, not trusted blindly. The mail waits.
    result = await send(settings(starttls_relay.port, smtp_starttls=True))
    assert result.outcome == "retry" and "CERTIFICATE_VERIFY_FAILED" in result.error
    assert starttls_relay.received == []


async def test_without_starttls_the_relay_refuses_and_the_password_never_travels(
        starttls_relay: Relay) -> None:
    result = await send(settings(starttls_relay.port))
    assert result.outcome != "sent" and starttls_relay.received == []


async def test_a_refused_login_is_a_soft_bounce(starttls_relay: Relay, ca: CA) -> None:
    result = await send(settings(starttls_relay.port, smtp_starttls=True,
                                 smtp_ca_file=str(ca.pem), smtp_password="wrong"))
    assert result.outcome == "retry" and result.error.startswith("535")
    assert starttls_relay.received == []


async def test_the_diagnostics_probe_uses_the_same_tls_and_login(
        starttls_relay: Relay, ca: CA) -> None:
    s = settings(starttls_relay.port, smtp_starttls=True, smtp_ca_file=str(ca.pem))
    report = await diagnose_smtp(SimpleNamespace(state=SimpleNamespace(settings=s)))  # type: ignore[arg-type]
    assert report["server"] == f"127.0.0.1:{starttls_relay.port}"
    assert report["ehlo"].startswith("250 ")
    with pytest.raises(ssl.SSLCertVerificationError):
        await diagnose_smtp(SimpleNamespace(state=SimpleNamespace(  # type: ignore[arg-type]
            settings=settings(starttls_relay.port, smtp_starttls=True))))


def test_the_relay_password_never_shows_in_the_configs_repr() -> None:
    config = smtp_config(settings(25, smtp_starttls=True))
    assert config.password == PASSWORD and PASSWORD not in repr(config)
