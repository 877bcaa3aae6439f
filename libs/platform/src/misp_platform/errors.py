"""The kinds of refusal a service's domain raises; `misp_platform.misp.domain_errors` answers
each the way MISP does (the status and the body), so no service writes that translation itself.

Pure: nothing from the web framework, the database or Kafka, because every service's `domain/`
imports it (the import contracts in pyproject.toml forbid those there). A service names its own
errors (`OrganisationNotFoundError`, `JobRefusedError`...) as subclasses of these kinds; one that
also has a base of its own (`class UnknownSettingError(SettingsDomainError, NotFoundError)`) is
answered as the first kind in its method resolution order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    """A rule refused a command: MISP's 400 with `message`, unless a kind below says otherwise."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidFieldsError(DomainError):
    """A save refused by validation: MISP's failure envelope (`{"saved": false, "errors": ...}`).

    `errors` is Cake's `{"field": ["message"]}` shape, a list or a plain text; `custom_message`
    the envelope's message (None: the route's "Could not <action> <Singular>"); `message`, as the
    exception's text, the same or else a summary of `errors`. `status` is MISP's 403 (a route
    that is not MISP's may refuse with another, as orgs' logo upload does).
    """

    status: int = 403

    def __init__(self, errors: Any, message: str | None = None) -> None:
        super().__init__(message if message is not None else describe(errors))
        self.errors = errors
        self.custom_message = message


class NotFoundError(DomainError):
    """No such thing, or not one the caller may see (MISP answers 404 for both)."""


class ForbiddenError(DomainError):
    """The caller may not do this (403)."""


class NotAllowedError(DomainError):
    """MISP's MethodNotAllowed (405): how MISP refuses some requests it cannot take."""


class BadRequestError(DomainError):
    """MISP's BadRequest (400)."""


KINDS: tuple[type[DomainError], ...] = (InvalidFieldsError, NotFoundError, ForbiddenError,
                                        NotAllowedError, BadRequestError, DomainError)


def kind_of(error: DomainError) -> type[DomainError]:
    """The kind an error is answered as: the first of KINDS in its method resolution order."""
    for klass in type(error).__mro__:
        if klass in KINDS:
            return klass
    return DomainError  # pragma: no cover - every DomainError has DomainError in its MRO


def describe(errors: Any) -> str:
    """Cake's validation errors as one line: `field: message, message; field: message`."""
    if isinstance(errors, str):
        return errors
    if isinstance(errors, Mapping):
        return "; ".join(f"{field}: {', '.join(map(str, messages))}"
                         if isinstance(messages, list | tuple) else f"{field}: {messages}"
                         for field, messages in errors.items())
    if isinstance(errors, list | tuple):
        return "; ".join(map(str, errors))
    return str(errors)
