"""TOTP codes as MISP's authenticator apps make them (RFC 6238: 6 digits, 30-second steps,
SHA-1), checked with one step of drift either way, each time step good once; the otpauth://
URI an app enrols from and its QR code (SVG). Pure: no I/O."""

from __future__ import annotations

import hmac
import io

import pyotp
import segno

STEP_S = 30
DIGITS = 6
WINDOW = 1  # steps accepted before and after the current one (clock drift)

WRONG_CODE = "The OTP is incorrect or has expired"
ENROLLED = "The OTP is correct and now active for your account."
ALREADY_SET = ("Your account already has a TOTP. Please contact your organisational "
               "administrator to change or delete it.")
DELETED = "User TOTP deleted."
DISABLED = "OTP has been disabled on this instance."


def new_secret() -> str:
    """A random base32 secret (160 bits, as pyotp and MISP's library make them)."""
    return pyotp.random_base32(32)


def step_at(now: float) -> int:
    return int(now) // STEP_S


def clean_code(code: object) -> str | None:
    """The code as typed (spaces dropped), or None when it cannot be a code at all."""
    if not isinstance(code, str | int) or isinstance(code, bool):
        return None
    text = str(code).replace(" ", "").strip()
    return text if len(text) == DIGITS and text.isascii() and text.isdigit() else None


def accepted_step(secret: str, code: object, *, now: float,
                  last_step: int | None = None) -> int | None:
    """The time step `code` belongs to when it is right at `now` (one step of drift either way)
    and newer than `last_step` (a code already accepted is refused: a replay); else None."""
    cleaned = clean_code(code)
    if cleaned is None:
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    current = step_at(now)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(step), cleaned):
            return step
    return None


def issuer_of(otp_issuer: str | None, misp_org: str | None) -> str:
    """`Security.otp_issuer`, else MISP's "<MISP.org> MISP"."""
    if otp_issuer and otp_issuer.strip():
        return otp_issuer.strip()
    return f"{(misp_org or '').strip()} MISP".strip()


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=email, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as a QR code in SVG, without an XML declaration or any style attribute (the
    console inlines it under a CSP without 'unsafe-inline')."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", xmldecl=False, svgns=True, scale=4,
                                    omitsize=True, border=4, nl=False,
                                    title="TOTP enrolment QR code")
    return out.getvalue().decode("utf-8")
