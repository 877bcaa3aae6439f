"""Errors of identity's domain rules; the API turns each into MISP's answer."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A rule refused a command."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidFieldsError(DomainError):
    """Validation failed: Cake's `{"field": ["message"]}` (MISP's 403 failure envelope)."""

    def __init__(self, errors: dict[str, list[str]] | Any, message: str | None = None) -> None:
        super().__init__(message or "validation failed")
        self.errors = errors
        self.custom_message = message


class UnknownOrganisationError(InvalidFieldsError):
    """The organisation is not (or not yet: orgs' event may still be on its way) open to users
    in identity's projection of organisations."""


class NotFoundError(DomainError):
    """No such thing, or not visible to the caller (MISP answers 404 for both)."""


class ForbiddenError(DomainError):
    """The caller may not do this (403)."""


class NotAllowedError(DomainError):
    """MISP's MethodNotAllowed (405) answers."""


class BadRequestError(DomainError):
    """MISP's BadRequest (400) answers."""
