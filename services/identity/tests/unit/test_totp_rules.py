"""TOTP codes as identity checks them: one step of drift either way, never a step already used,
six digits only; the issuer MISP names; a sealed secret opens for its own user only."""

from __future__ import annotations

import pyotp
import pytest
from cryptography.exceptions import InvalidTag

from identity.adapters.totp_secrets import seal, unseal
from identity.domain.totp import accepted_step, clean_code, issuer_of, step_at

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_800_000_015.0


def code(steps: int) -> str:
    return pyotp.TOTP(SECRET).at(NOW + 30 * steps)


def test_a_code_of_the_step_before_now_or_after_is_accepted_and_no_further() -> None:
    current = step_at(NOW)
    for drift in (-1, 0, 1):
        assert accepted_step(SECRET, code(drift), now=NOW) == current + drift
    for drift in (-2, 2):
        assert accepted_step(SECRET, code(drift), now=NOW) is None


def test_a_step_already_accepted_is_refused() -> None:
    current = step_at(NOW)
    assert accepted_step(SECRET, code(0), now=NOW, last_step=current) is None
    assert accepted_step(SECRET, code(1), now=NOW, last_step=current) == current + 1


FULLWIDTH_DIGITS = "\uff11\uff12\uff13\uff14\uff15\uff16"  # digits to str.isdigit, not ASCII


@pytest.mark.parametrize("typed", ["12345", "1234567", "12a456", None, True, FULLWIDTH_DIGITS])
def test_only_six_ascii_digits_are_a_code(typed: object) -> None:
    assert clean_code(typed) is None
    assert accepted_step(SECRET, typed, now=NOW) is None


def test_spaces_in_a_typed_code_are_dropped() -> None:
    assert clean_code(" 123 456 ") == "123456"


def test_the_issuer_is_the_setting_else_the_organisation_and_misp() -> None:
    assert issuer_of("Example CERT", "ORGNAME") == "Example CERT"
    assert issuer_of("  ", "ORGNAME") == "ORGNAME MISP"


def test_a_sealed_secret_opens_for_its_user_and_pepper_only() -> None:
    stored = seal("pepper", 7, SECRET)
    assert SECRET not in stored and unseal("pepper", 7, stored) == SECRET
    with pytest.raises(InvalidTag):
        unseal("pepper", 8, stored)
    with pytest.raises(InvalidTag):
        unseal("other pepper", 7, stored)
