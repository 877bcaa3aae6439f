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
