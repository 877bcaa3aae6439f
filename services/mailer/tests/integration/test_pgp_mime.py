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


async def test_under_bodyonlyencrypted_a_keyless_user_gets_the_short_body_and_a_keyed_one_all(
        mailer: Mailer, user_keys: dict[str, UserKey]) -> None:
    s = settings(**{"GnuPG.bodyonlyencrypted": True})
    fingerprint = await mailer.instance_key(s)
    key = user_keys["good"]
    check = await mailer.check_key(key.public)

    def draft(to: str, gpgkey: str | None) -> Draft:
        return Draft(Recipient(to, 8, 1, gpgkey), "Event 8", "The details of event 8.\n",
                     body_unencrypted="Only a link to event 8.\n")

    plain, encrypted, signed, _ = await mailer.render(
        draft("nokey@example.test", None), s, "<m3@acme.test>", None)
    message = email.message_from_bytes(plain, policy=policy.default)
    assert (encrypted, signed) == (False, True)
    text_part = message.get_payload()[0]
    assert "Only a link to event 8." in text_part.get_content()
    assert b"The details" not in plain

    secret, encrypted, signed, _ = await mailer.render(
        draft("good@example.test", key.public), s, "<m4@acme.test>", check)
    assert (encrypted, signed) == (True, True)
    payload = email.message_from_bytes(secret, policy=policy.default).get_payload()[1]
    key.gpg.import_keys(mailer.keyring.public_key())
    decrypted = key.gpg.decrypt(payload.get_payload(decode=True), always_trust=True)
    assert decrypted.ok and decrypted.fingerprint == fingerprint
    assert b"The details of event 8." in decrypted.data and b"Only a link" not in decrypted.data


async def test_with_gnupg_sign_off_mail_is_plain_or_only_encrypted(
        mailer: Mailer, user_keys: dict[str, UserKey]) -> None:
    s = settings(**{"GnuPG.sign": False})
    key = user_keys["good"]
    check = await mailer.check_key(key.public)

    plain, encrypted, signed, _ = await mailer.render(
        Draft(Recipient("nokey@example.test", 9, 1, None), "Hi", "Plain words.\n"), s,
        "<m5@acme.test>", None)
    message = email.message_from_bytes(plain, policy=policy.default)
    assert (encrypted, signed) == (False, False)
    assert message.get_content_type() == "text/plain"
    assert "Plain words." in message.get_content() and b"PGP" not in plain

    secret, encrypted, signed, _ = await mailer.render(
        Draft(Recipient("good@example.test", 10, 1, key.public), "Hi", "Sealed words.\n"), s,
        "<m6@acme.test>", check)
    message = email.message_from_bytes(secret, policy=policy.default)
    assert (encrypted, signed) == (True, False)
    assert message.get_content_type() == "multipart/encrypted"
    decrypted = key.gpg.decrypt(message.get_payload()[1].get_payload(decode=True),
                                always_trust=True)
    assert decrypted.ok and b"Sealed words." in decrypted.data
    assert not decrypted.valid and decrypted.fingerprint is None  # encrypted, not signed


def test_concurrent_first_imports_into_a_new_keyring_all_succeed(
        user_keys: dict[str, UserKey]) -> None:
    # A bulk send checks its recipients' keys in parallel; two imports at once into a new
    # GnuPG home used to fail now and then (a good key reported "invalid": seen in CI).
    from concurrent.futures import ThreadPoolExecutor

    from mailer.adapters.gpg import Keyring

    expected = {"good": None, "expired": "expired", "revoked": "revoked"}
    for _ in range(30):
        home = Path(tempfile.mkdtemp(prefix="ck", dir="/tmp"))
        try:
            keyring = Keyring(home)
            with ThreadPoolExecutor(len(expected)) as pool:
                checks = dict(zip(expected, pool.map(
                    keyring.check_key, [user_keys[name].public for name in expected]),
                    strict=True))
            assert {name: c.problem for name, c in checks.items()} == expected
        finally:
            drop_home(home)


async def test_a_secret_key_is_never_imported_into_the_instances_home(
        mailer: Mailer, gnupg_home: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
    try:
        planter = gnupg.GPG(gnupghome=str(home))
        planted = planter.gen_key(planter.gen_key_input(
            key_type="RSA", key_length=2048, name_email="planted@example.test",
            no_protection=True))
        secret = planter.export_keys(str(planted), secret=True, expect_passphrase=False)
        public = planter.export_keys(str(planted))
    finally:
        drop_home(home)
    check = await mailer.check_key(secret + public)
    assert check.usable is False and "secret key material is refused" in (check.problem or "")
    instance = gnupg.GPG(gnupghome=str(gnupg_home))
    fingerprints = {k["fingerprint"] for k in instance.list_keys()}
    assert str(planted) not in fingerprints
    assert str(planted) not in {k["fingerprint"] for k in instance.list_keys(secret=True)}
    assert (await mailer.check_key(public)).usable  # the same key's public half is welcome


async def test_every_process_signs_with_the_deployments_instance_key_from_a_fresh_home() -> None:
    from mailer.adapters.gpg import Keyring

    maker_home, first_home, second_home = (Path(tempfile.mkdtemp(prefix="gpg", dir="/tmp"))
                                           for _ in range(3))
    key_file = maker_home / "instance.asc"
    try:
        maker = gnupg.GPG(gnupghome=str(maker_home))
        made = maker.gen_key(maker.gen_key_input(
            key_type="EDDSA", key_curve="ed25519", name_email="misp@example.test",
            no_protection=True))
        key_file.write_text(maker.export_keys(str(made), secret=True, expect_passphrase=False))
        # Two processes (a replica, or the same container restarted with a fresh state dir).
        first = Keyring(first_home, instance_key_file=key_file)
        second = Keyring(second_home, instance_key_file=key_file)
        assert first.ensure_instance_key(name="x", email="x@example.test") == str(made)
        assert second.ensure_instance_key(name="y", email="y@example.test") == str(made)
        signature, _ = second.sign_detached(b"hello")
        # What the first process publishes at /gpg.asc verifies what the second one signed.
        assert verify_detached(first.public_key(), signature.encode(), b"hello") == str(made)
        first.close()
        second.close()
    finally:
        for home in (maker_home, first_home, second_home):
            drop_home(home)
