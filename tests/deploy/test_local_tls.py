"""deploy/local/tls.py, the local gateway's certificate maker: a constrained CA made once, a server
certificate for 127.0.0.1, ::1 and localhost that a TLS client trusting only ca.pem accepts (a
real handshake through Python's ssl, in memory), kept while it is good and made again when it is
close to expiry or was signed by another CA. Needs no service."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from misp_platform.testing import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tls() -> ModuleType:
    return load_script(ROOT / "deploy" / "local" / "tls.py", "local_tls_under_test")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _handshake(directory: Path, server_hostname: str) -> None:
    """A TLS handshake in memory: the server with server.pem/key, a client trusting ca.pem
    only, checking the name; raises ssl.SSLCertVerificationError when the client refuses."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(directory / "server.pem", directory / "server.key")
    client_ctx = ssl.create_default_context(cafile=str(directory / "ca.pem"))
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        done = True
        for side, outbox, peer_in in ((client, c_out, s_in), (server, s_out, c_in)):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                done = False
            peer_in.write(outbox.read())
        if done:
            return
    raise AssertionError("the handshake did not finish")


def test_the_ca_is_a_constrained_ca_and_the_server_names_the_local_addresses(
        tls: ModuleType, tmp_path: Path) -> None:
    done = tls.ensure(tmp_path)
    assert len(done) == 2 and done[0].startswith("made a new CA"), done
    assert done[1].startswith("made a server certificate (there was none)"), done
    ca = _cert(tmp_path / "ca.pem")
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert set(constraints.value.permitted_subtrees or []) == {
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
        x509.IPAddress(ipaddress.ip_network("::1/128"))}

    server = _cert(tmp_path / "server.pem")
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    server.verify_directly_issued_by(ca)
    left = server.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=360) < left <= dt.timedelta(days=tls.SERVER_DAYS)

    for name in ("ca.key", "server.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    for name in ("ca.pem", "server.pem"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_a_client_trusting_the_ca_accepts_the_server_for_its_names_only(
        tls: ModuleType, tmp_path: Path) -> None:
    tls.ensure(tmp_path)
    for name in ("127.0.0.1", "localhost", "::1"):
        _handshake(tmp_path, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tmp_path, "example.org")
    # another directory's CA does not vouch for this server
    other = tmp_path / "other"
    tls.ensure(other)
    (other / "server.pem").write_bytes((tmp_path / "server.pem").read_bytes())
    (other / "server.key").write_bytes((tmp_path / "server.key").read_bytes())
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(other, "127.0.0.1")


def test_the_ca_cannot_vouch_for_other_names_even_with_its_key(
        tls: ModuleType, tmp_path: Path) -> None:
    """The name constraint: a certificate for example.org signed with ca.key is refused."""
    tls.ensure(tmp_path)
    ca = _cert(tmp_path / "ca.pem")
    ca_key = serialization.load_pem_private_key((tmp_path / "ca.key").read_bytes(), None)
    names = tls.Names(dns=("example.org",), ips=())
    cert, key = tls.make_server(names, ca, ca_key, dt.datetime.now(dt.UTC))
    (tmp_path / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(tls._key_pem(key))
    with pytest.raises(ssl.SSLCertVerificationError, match=r"(?i)name constraint|permitted"):
        _handshake(tmp_path, "example.org")


def test_the_ca_is_made_once_and_a_good_server_certificate_is_kept(
        tls: ModuleType, tmp_path: Path) -> None:
    tls.ensure(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert tls.ensure(tmp_path) == []
    assert tls.ensure(tmp_path, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=300)) == []
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_server_certificate_close_to_expiry_is_renewed_by_the_same_ca(
        tls: ModuleType, tmp_path: Path) -> None:
    tls.ensure(tmp_path)
    ca_before = (tmp_path / "ca.pem").read_bytes()
    old = _cert(tmp_path / "server.pem")
    later = old.not_valid_after_utc - tls.RENEW_BEFORE + dt.timedelta(hours=1)
    done = tls.ensure(tmp_path, now=later)
    assert len(done) == 1 and "it expires on" in done[0], done
    assert (tmp_path / "ca.pem").read_bytes() == ca_before
    new = _cert(tmp_path / "server.pem")
    assert new.serial_number != old.serial_number
    assert new.not_valid_after_utc > old.not_valid_after_utc
    new.verify_directly_issued_by(_cert(tmp_path / "ca.pem"))


def test_a_server_certificate_of_another_ca_or_names_is_made_again(
        tls: ModuleType, tmp_path: Path) -> None:
    tls.ensure(tmp_path)
    (tmp_path / "ca.pem").unlink()  # a new CA: the old server certificate is not its own
    done = tls.ensure(tmp_path)
    assert len(done) == 2 and "another CA signed it" in done[1], done
    _handshake(tmp_path, "127.0.0.1")

    # a server certificate of the same CA for fewer addresses (an older version's)
    ca = _cert(tmp_path / "ca.pem")
    ca_key = serialization.load_pem_private_key((tmp_path / "ca.key").read_bytes(), None)
    narrow = tls.Names(dns=("localhost",), ips=(ipaddress.ip_address("127.0.0.1"),))
    cert, key = tls.make_server(narrow, ca, ca_key, dt.datetime.now(dt.UTC))
    (tmp_path / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.key").write_bytes(tls._key_pem(key))
    done = tls.ensure(tmp_path)
    assert len(done) == 1 and "it names other addresses" in done[0], done
    _handshake(tmp_path, "::1")
