"""PGP/MIME (RFC 3156) messages: plain, signed (`multipart/signed`) or encrypted
(`multipart/encrypted`, signed inside by one gpg call, RFC 3156 §6.2).

The signed entity is serialized once, with CRLF line endings and quoted-printable, and those very
bytes are both signed and embedded: re-serializing could refold headers and break the signature.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from email import charset as email_charset
from email import policy
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formataddr, formatdate

from mailer.adapters.gpg import Keyring

SMTP_POLICY = policy.SMTP
LINE_BREAKS = re.compile(r"[\r\n]+")
_QP = email_charset.Charset("utf-8")
_QP.body_encoding = email_charset.QP
_QP.header_encoding = email_charset.QP


@dataclass(frozen=True)
class Envelope:
    """Who the mail is from and to, and what the headers say."""

    sender_name: str
    sender: str
    to: str
    subject: str
    message_id: str


def text_entity(body: str) -> bytes:
    """A text/plain MIME entity (7-bit safe), serialized once with CRLF."""
    part = MIMEText(body.replace("\r\n", "\n"), "plain", _QP)  # type: ignore[arg-type]
    del part["MIME-Version"]
    return part.as_bytes(policy=SMTP_POLICY)


def header_field(name: str, value: str) -> bytes:
    """One header field, folded with CRLF. A line break in `value` becomes a space, so no text
    can add a header of its own (the API refuses them in what clients send; this guards texts
    that come from settings and events); non-ASCII text is encoded (RFC 2047)."""
    value = LINE_BREAKS.sub(" ", value)
    if value.isascii():
        return SMTP_POLICY.fold(name, value).encode("ascii")
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _headers(env: Envelope, content_type: str) -> bytes:
    fields = [
        ("From", formataddr((LINE_BREAKS.sub(" ", env.sender_name), env.sender))),
        ("To", env.to),
        ("Subject", env.subject),
        ("Date", formatdate(localtime=False, usegmt=True)),
        ("Message-ID", env.message_id),
        ("MIME-Version", "1.0"),
        ("Content-Type", content_type),
    ]
    return b"".join(header_field(name, value) for name, value in fields)


def _armored(text: str) -> bytes:
    return text.replace("\r\n", "\n").rstrip("\n").replace("\n", "\r\n").encode("ascii")


def plain(env: Envelope, body: str) -> bytes:
    entity = text_entity(body)
    head, _, rest = entity.partition(b"\r\n\r\n")
    content_type = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-type:"))
    encoding = b"".join(line + b"\r\n" for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-transfer-encoding:"))
    return _headers(env, content_type.decode("ascii")) + encoding + b"\r\n" + rest


def signed(env: Envelope, body: str, keyring: Keyring) -> bytes:
    entity = text_entity(body)
    signature, micalg = keyring.sign_detached(entity)
    boundary = f"=-sig-{secrets.token_hex(12)}"
    head = _headers(env, f'multipart/signed; micalg={micalg}; '
                         f'protocol="application/pgp-signature"; boundary="{boundary}"')
    b = boundary.encode("ascii")
    return (head + b"\r\n"
            + b"This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n"
            + b"--" + b + b"\r\n" + entity + b"\r\n"
            + b"--" + b + b"\r\n"
            + b'Content-Type: application/pgp-signature; name="signature.asc"\r\n'
            + b"Content-Description: OpenPGP digital signature\r\n"
            + b'Content-Disposition: attachment; filename="signature.asc"\r\n\r\n'
            + _armored(signature) + b"\r\n"
            + b"--" + b + b"--\r\n")


def encrypted(env: Envelope, body: str, keyring: Keyring, recipient: str, *,
              sign: bool) -> bytes:
    ciphertext = keyring.encrypt(text_entity(body), recipient, sign=sign)
    boundary = f"=-enc-{secrets.token_hex(12)}"
    head = _headers(env, f'multipart/encrypted; protocol="application/pgp-encrypted"; '
                         f'boundary="{boundary}"')
    b = boundary.encode("ascii")
    return (head + b"\r\n"
            + b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
            + b"--" + b + b"\r\n"
            + b"Content-Type: application/pgp-encrypted\r\n"
            + b"Content-Description: PGP/MIME version identification\r\n\r\n"
            + b"Version: 1\r\n\r\n"
            + b"--" + b + b"\r\n"
            + b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n'
            + b"Content-Description: OpenPGP encrypted message\r\n"
            + b'Content-Disposition: inline; filename="encrypted.asc"\r\n\r\n'
            + _armored(ciphertext) + b"\r\n"
            + b"--" + b + b"--\r\n")
