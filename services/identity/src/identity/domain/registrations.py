"""Self-registration (MISP's `users/register`, stored as an `Inbox` row of type registration):
the fields a visitor may send, typed, and MISP's messages."""

from __future__ import annotations

from typing import Any

from identity.domain.users import email_errors
from identity.domain.values import to_bool

# UsersController::register keeps these fields of the request (absent or empty: false).
TEXT_FIELDS = ("email", "org_name", "org_uuid", "message", "custom_perms", "pgp")
FLAG_FIELDS = ("perm_sync", "perm_publish", "perm_admin")
MAX_TEXT = {"email": 255, "org_name": 255, "org_uuid": 64, "message": 65535,
            "custom_perms": 255, "pgp": 65535}

NOT_ENABLED = "Self registration is not enabled on this instance."
EMAIL_REQUIRED = "We require at least the email field to be filled."
SUBMITTED = "User registration submitted."
INVALID_REGISTRATION = "Invalid registration."
NO_ORGANISATION = "No organisation selected. Supply an Organisation ID"
NO_ROLE = "No role selected. Supply a Role ID"


def title(email: str) -> str:
    return f"User registration for {email}"


def parse_request(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The registration's `data` as MISP keeps it, and Cake's errors for the bad fields."""
    data: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name in TEXT_FIELDS:
        value = body.get(name)
        if value in (None, "", False):
            data[name] = False
        elif not isinstance(value, str) or len(value) > MAX_TEXT[name]:
            errors.setdefault(name, []).append(
                f"Must be text of at most {MAX_TEXT[name]} characters.")
        else:
            data[name] = value.strip() if name == "email" else value
    for name in FLAG_FIELDS:
        value = body.get(name)
        flag = False if value in (None, "") else to_bool(value)
        if flag is None:
            errors.setdefault(name, []).append("Value is not a boolean.")
        else:
            data[name] = flag
    if "email" not in errors and data.get("email"):
        problems = email_errors(data["email"])
        if problems:
            errors["email"] = problems
    return data, errors
