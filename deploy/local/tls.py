#!/usr/bin/env python3
"""The local gateway's certificates: a CA made once and a server certificate it signs for
127.0.0.1, ::1 and localhost, renewed when it is close to expiry (with `cryptography`).

    tls.py --dir .local/tls        # make what is missing or due; print what it did

Writes into the directory: ca.pem (the CA to trust: curl --cacert, PyMISP ssl=), ca.key,
server.pem and server.key (the keys 0600). The CA may sign only for those names (a name
constraint): trusting ca.pem trusts nothing else, even if ca.key leaks. A server certificate is
made again when it has fewer than RENEW_BEFORE left, names other addresses, or was not signed by
the CA of the directory; nginx reads it at its next start or reload (deploy/local/gateway.sh
runs this before each).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
DNS_NAMES = ("localhost",)
IP_ADDRESSES = ("127.0.0.1", "::1")

CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Names:
    dns: tuple[str, ...] = DNS_NAMES
    ips: tuple[IPAddress, ...] = tuple(ipaddress.ip_address(a) for a in IP_ADDRESSES)

    def san(self) -> x509.SubjectAlternativeName:
        general: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns]
        general += [x509.IPAddress(ip) for ip in self.ips]
        return x509.SubjectAlternativeName(general)

    def constraints(self) -> x509.NameConstraints:
        permitted: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns]
        permitted += [x509.IPAddress(ipaddress.ip_network(ip)) for ip in self.ips]
        return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=None)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically, with `mode` from the start (a key is never readable by others)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(names: Names, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MISP admin plane (local)"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"local CA of {socket.gethostname()[:40]}"),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(names.constraints(), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_server(names: Names, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
                now: dt.datetime, days: int = SERVER_DAYS,
                ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names.dns[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(names.san(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _load_pair(cert_path: Path, key_path: Path,
               ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The certificate and its key, or None when either is missing, unreadable or they do not
    belong together."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.public_key() != key.public_key():
        return None
    return cert, key


def _names_of(cert: x509.Certificate) -> tuple[set[str], set[IPAddress]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    ips = {ip for ip in san.get_values_for_type(x509.IPAddress)
           if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)}
    return set(san.get_values_for_type(x509.DNSName)), ips


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def server_due(cert: x509.Certificate, ca: x509.Certificate, names: Names,
               now: dt.datetime) -> str | None:
    """Why the server certificate must be made again, or None when it can stay."""
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return f"it expires on {cert.not_valid_after_utc:%Y-%m-%d}"
    if cert.not_valid_before_utc > now:
        return "it is not valid yet"
    if _names_of(cert) != (set(names.dns), set(names.ips)):
        return "it names other addresses"
    if not _signed_by(cert, ca):
        return "another CA signed it"
    return None


def ensure(directory: Path, names: Names | None = None, now: dt.datetime | None = None,
           ) -> list[str]:
    """Make the CA once and the server certificate when it is missing or due; what was done."""
    names = names or Names()
    now = now or _now()
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)  # nginx reads the certificates; the keys stay 0600
    done: list[str] = []
    ca_pair = _load_pair(directory / CA_CERT, directory / CA_KEY)
    if ca_pair is None or ca_pair[0].not_valid_after_utc - now < RENEW_BEFORE:
        had = (directory / CA_CERT).exists()
        ca_pair = make_ca(names, now)
        _write(directory / CA_KEY, _key_pem(ca_pair[1]), 0o600)
        _write(directory / CA_CERT, ca_pair[0].public_bytes(serialization.Encoding.PEM), 0o644)
        done.append(f"made a new CA: {directory / CA_CERT}"
                    + (" (it replaces the old one: trust it again where you had)" if had else ""))
    ca, ca_key = ca_pair
    server = _load_pair(directory / SERVER_CERT, directory / SERVER_KEY)
    why = "there was none" if server is None else server_due(server[0], ca, names, now)
    if why is not None:
        cert, key = make_server(names, ca, ca_key, now)
        _write(directory / SERVER_KEY, _key_pem(key), 0o600)
        _write(directory / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        done.append(f"made a server certificate ({why}), valid until "
                    f"{cert.not_valid_after_utc:%Y-%m-%d}")
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dir", type=Path, required=True, help="where the files are (.local/tls)")
    a = p.parse_args(argv)
    for line in ensure(a.dir.resolve()):
        print(f"tls: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
