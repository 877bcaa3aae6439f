"""Users: field validation in MISP's words, the REST defaults of an add, and MISP's record shape."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import regex

from identity.domain.values import to_bool, to_int
from misp_contracts.events.identity import RoleState, UserState

_LOCAL = r"[\p{L}0-9!#$%&'*+/=?^_`{|}~-]+"
EMAIL = regex.compile(rf"^{_LOCAL}(\.{_LOCAL})*@[a-z0-9_\-\.]+$", regex.IGNORECASE)
EMAIL_TAKEN = "An account with this email address already exists."
INVALID_EMAIL = "An email address is required"
INVALID_ROLE = "Invalid role"
INVALID_ORG = "Invalid organisation"
ROLE_NOT_ASSIGNABLE = "You are not authorised to assign that role to a user."
INVALID_USER = "Invalid user"
INVALID_USER_OR_NOT_AUTHORISED = "Invalid user or not authorised."
MAX_EMAIL = 255
MAX_TEXT = 65535
CONTROL = regex.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SYSTEM_EMAIL = "admin@admin.test"

BOOL_FIELDS = ("autoalert", "contactalert", "disabled", "termsaccepted", "change_pw",
               "force_logout", "notification_daily", "notification_weekly",
               "notification_monthly")
INT_FIELDS = ("nids_sid", "server_id", "org_id", "role_id")
TEXT_FIELDS = ("gpgkey", "certif_public")
# Never taken from a body (PyMISP may send back a whole fetched user).
IGNORED_FIELDS = frozenset({"id", "invited_by", "date_modified", "date_created", "totp",
                            "totp_is_set", "hotp_counter", "last_login", "current_login",
                            "last_api_access", "last_pw_change", "newsread", "authkey", "uuid",
                            "sub", "external_auth_required", "external_auth_key",
                            "gpg_fingerprint", "fingerprint", "pgp_status", "orgAdmins",
                            "enable_password", "notify", "confirm_password"})


def random_nids_sid() -> int:
    """7 random digits, as MISP generates a NIDS sid when none is given."""
    return 1_000_000 + secrets.randbelow(9_000_000)


def random_password() -> str:
    return secrets.token_urlsafe(30)


def text_problem(value: Any) -> str | None:
    """Why a key or certificate text cannot be kept: MISP's TEXT column holds 65,535 bytes, and
    a control character (other than tab and line breaks) has no place in armored text; both keep
    a user's event far below the cap of one Kafka message."""
    if not isinstance(value, str):
        return "Invalid value."
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no text at all
        return "Invalid value."
    if size > MAX_TEXT:
        return f"The value can be at most {MAX_TEXT} bytes."
    if CONTROL.search(value):
        return "Control characters are not allowed."
    return None


def email_errors(email: Any) -> list[str]:
    if not isinstance(email, str) or not email.strip():
        return [INVALID_EMAIL]
    if len(email) > MAX_EMAIL:
        return [f"The email address can be at most {MAX_EMAIL} characters."]
    if not EMAIL.fullmatch(email.strip()):
        return ["Please enter a valid email address."]
    return []


def parse_user_fields(body: dict[str, Any], *, creating: bool) -> tuple[dict[str, Any],
                                                                          dict[str, list[str]]]:
    """The user fields of a body, typed; and Cake's `{"field": [msg]}` for the bad ones."""
    fields: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    if creating or "email" in body:
        problems = email_errors(body.get("email"))
        if problems:
            errors["email"] = problems
        else:
            fields["email"] = str(body["email"]).strip()
    for name in BOOL_FIELDS:
        if name in body and body[name] is not None:
            value = to_bool(body[name])
            if value is None:
                errors.setdefault(name, []).append("Value is not a boolean.")
            else:
                fields[name] = value
    for name in INT_FIELDS:
        if name in body and body[name] not in (None, ""):
            number = to_int(body[name])
            if number is None:
                errors.setdefault(name, []).append("Please enter a numeric value.")
            else:
                fields[name] = number
    for name in TEXT_FIELDS:
        if name in body:
            value = body[name]
            if value is None or value == "":
                fields[name] = None
            else:
                problem = text_problem(value)
                if problem:
                    errors.setdefault(name, []).append(problem)
                else:
                    fields[name] = value
    if "expiration" in body:
        value = body["expiration"]
        if value in (None, ""):
            fields["expiration"] = None
        else:
            try:
                parsed = datetime.fromisoformat(str(value))
                fields["expiration"] = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            except ValueError:
                errors.setdefault("expiration", []).append("Invalid date.")
    return fields, errors


def role_assignable_by_org_admin(role: RoleState) -> bool:
    """Org admins cannot hand out site-admin, sync, regexp or site-admin-restricted roles."""
    return not (role.perm_site_admin or role.perm_sync or role.perm_regexp_access
                or role.restricted_to_site_admin)


def _unix(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value is not None else None


def user_fields(user: UserState, *, fingerprint: str | None = None,
                index: bool = False) -> dict[str, Any]:
    """A user as MISP's `users` row renders (advanced authkeys: no `authkey`)."""
    data: dict[str, Any] = {
        "id": user.id,
        "org_id": user.org_id,
        "server_id": user.server_id,
        "email": user.email,
        "autoalert": user.autoalert,
        "invited_by": user.invited_by,
        "gpgkey": user.gpgkey or "",
        "certif_public": user.certif_public or "",
        "nids_sid": user.nids_sid,
        "termsaccepted": user.termsaccepted,
        "newsread": user.newsread,
        "role_id": user.role_id,
        "change_pw": user.change_pw,
        "contactalert": user.contactalert,
        "disabled": user.disabled,
        "expiration": user.expiration,
        "current_login": _unix(user.current_login) or 0,
        "last_login": _unix(user.last_login) or 0,
        "last_api_access": 0,
        "force_logout": user.force_logout,
        "date_created": _unix(user.date_created),
        "date_modified": _unix(user.date_modified),
        "last_pw_change": _unix(user.last_pw_change),
    }
    if not index:
        data.update({
            "password": "*****", "sub": None, "external_auth_required": False,
            "external_auth_key": "", "notification_daily": user.notification_daily,
            "notification_weekly": user.notification_weekly,
            "notification_monthly": user.notification_monthly, "totp": None,
            "hotp_counter": None, "totp_is_set": user.totp_is_set,
        })
        del data["server_id"]
    if user.gpgkey:
        data["fingerprint"] = fingerprint or user.gpg_fingerprint
        data["pgp_status"] = "OK" if (fingerprint or user.gpg_fingerprint) else "Invalid"
    return data
