"""Signed and encrypted mail (RFC 3156) against the real gpg: decrypted with the recipient's key,
signatures verified with the instance key, MIME structure checked."""

from __future__ import annotations

import email
import tempfile
from email import policy
from pathlib import Path

import gnupg

from mailer.domain.model import MailSettings, Recipient
from mailer.handlers.compose import Draft, Mailer
from misp_contracts.settings_catalogue import defaults

from ..support import UserKey, drop_home


def settings(**over: object) -> MailSettings:
    return MailSettings({**defaults(), "MISP.org": "ACME", "MISP.email": "misp@acme.test",
                         **over})


def signed_part_bytes(raw: bytes, boundary: str) -> bytes:
    """The first body part's bytes exactly as sent (what the signature covers)."""
    marker = b"--" + boundary.encode()
    start = raw.index(marker + b"\r\n") + len(marker) + 2
    end = raw.index(b"\r\n" + marker, start)
    return raw[start:end]


def verify_detached(public_key: str, signature: bytes, data: bytes) -> str | None:
    """The fingerprint of a valid signature, checked by a keyring that has only `public_key`."""
    home = Path(tempfile.mkdtemp(prefix="vf", dir="/tmp"))
    try:
        gpg = gnupg.GPG(gnupghome=str(home))
        gpg.import_keys(public_key)
        (home / "sig.asc").write_bytes(signature)
        verified = gpg.verify_data(str(home / "sig.asc"), data)
        return str(verified.fingerprint) if verified.valid else None
    finally:
        drop_home(home)


async def test_a_mail_to_a_user_without_key_is_pgp_mime_signed_by_the_instance_key(
        mailer: Mailer) -> None:
    s = settings()
    fingerprint = await mailer.instance_key(s)
    draft = Draft(Recipient("nokey@example.test", 5, 1, None), "Hello", "Line one\nLine two ü\n")

    raw, encrypted, signed, _ = await mailer.render(draft, s, "<m1@acme.test>", None)

    message = email.message_from_bytes(raw, policy=policy.default)
    assert not encrypted and signed
    assert message.get_content_type() == "multipart/signed"
    assert message.get_param("protocol") == "application/pgp-signature"
    assert message.get_param("micalg") == "pgp-sha256"
    text_part, signature_part = message.get_payload()
    assert text_part.get_content_type() == "text/plain"
    assert "Line two ü" in text_part.get_content()
    assert signature_part.get_content_type() == "application/pgp-signature"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert verify_detached(mailer.keyring.public_key(), signature_part.get_payload(decode=True),
                           signed_part_bytes(raw, message.get_boundary())) == fingerprint


async def test_a_mail_to_a_user_with_a_key_is_signed_and_encrypted_to_it(
        mailer: Mailer, user_keys: dict[str, UserKey]) -> None:
    s = settings(**{"GnuPG.obscure_subject": True})
    fingerprint = await mailer.instance_key(s)
    key = user_keys["good"]
    check = await mailer.check_key(key.public)
    draft = Draft(Recipient("good@example.test", 6, 1, key.public), "Secret subject",
                  "The secret body.\n")

    raw, encrypted, signed, subject = await mailer.render(draft, s, "<m2@acme.test>", check)

    message = email.message_from_bytes(raw, policy=policy.default)
    assert encrypted and signed and subject == "MISP notification"
    assert message["Subject"] == "MISP notification" and b"secret body" not in raw
    assert message.get_content_type() == "multipart/encrypted"
    assert message.get_param("protocol") == "application/pgp-encrypted"
    control, payload = message.get_payload()
    assert control.get_content_type() == "application/pgp-encrypted"
    assert "Version: 1" in control.get_payload()
    assert payload.get_content_type() == "application/octet-stream"
    key.gpg.import_keys(mailer.keyring.public_key())
    decrypted = key.gpg.decrypt(payload.get_payload(decode=True), always_trust=True)
    assert decrypted.ok and decrypted.valid and decrypted.fingerprint == fingerprint
    inner = email.message_from_bytes(decrypted.data, policy=policy.default)
    assert inner.get_content_type() == "text/plain"
    assert inner.get_content().replace("\r\n", "\n") == "The secret body.\n"


async def test_expired_revoked_and_invalid_keys_are_reported(
        mailer: Mailer, user_keys: dict[str, UserKey]) -> None:
    assert (await mailer.check_key(user_keys["expired"].public)).problem == "expired"
    assert (await mailer.check_key(user_keys["revoked"].public)).problem == "revoked"
    assert (await mailer.check_key("not a key")).problem == "invalid"
    assert (await mailer.check_key(user_keys["good"].public)).usable
