"""Errors of identity's domain rules: the platform's kinds (misp_platform.errors), which the API
answers as MISP does (misp_platform.misp.as_misp), under the names identity's rules use."""

from __future__ import annotations

from misp_platform.errors import (
    BadRequestError,
    DomainError,
    ForbiddenError,
    InvalidFieldsError,
    NotAllowedError,
    NotFoundError,
)

__all__ = ["BadRequestError", "DomainError", "ForbiddenError", "InvalidFieldsError",
           "NotAllowedError", "NotFoundError", "UnknownOrganisationError"]


class UnknownOrganisationError(InvalidFieldsError):
    """The organisation is not (or not yet: orgs' event may still be on its way) open to users
    in identity's projection of organisations."""
