"""Reading the API's answers for the organisation and role pages: one record, and whether a
refusal is a form's validation errors (shown on the form) or not (an error page)."""

from __future__ import annotations

from typing import Any

from console.gateway import ApiError


def record_of(body: Any, name: str) -> dict[str, Any]:
    """`{"Organisation": {...}}` (MISP's record) or the bare fields, as a dict."""
    if isinstance(body, dict):
        inner = body.get(name, body)
        return dict(inner) if isinstance(inner, dict) else {}
    return {}


def refused_form(exc: ApiError) -> bool:
    """A validation answer the form shows: MISP's 4xx with errors by field (403 "Could not add
    Organisation" with `errors: {"name": [...]}`), not a refusal of the viewer nor the API down.
    """
    return 400 <= exc.status < 500 and isinstance(exc.errors, dict) and bool(exc.field_errors)


def refusal(exc: ApiError) -> str:
    """MISP's message with its reason, when the reason is a sentence (`errors: "..."`)."""
    if isinstance(exc.errors, str) and exc.errors and exc.errors != exc.message:
        return f"{exc.message}: {exc.errors}"
    return exc.message


def shown_as_flash(exc: ApiError) -> bool:
    """A refusal of a button's action that its page shows as a message (MISP's 403 "Could not
    delete ..."), not a missing session, a missing record, nor the API down."""
    return 400 <= exc.status < 500 and exc.status not in (401, 404)
