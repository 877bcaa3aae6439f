"""The mailer's domain errors: kinds of the platform's (misp_platform.errors), which the API
answers as MISP does (failure envelopes name the action "send" and the thing "e-mail")."""

from __future__ import annotations

from typing import Any

from misp_platform.errors import InvalidFieldsError, NotAllowedError, NotFoundError

EMAILING_DISABLED = "Emailing is currently disabled on this instance."
INVALID_USER = "Invalid user"


class MailRequestError(InvalidFieldsError):
    """Bad input: MISP's 403 failure envelope, `errors` in Cake's shape."""

    def __init__(self, errors: Any, *, message: str | None = None) -> None:
        super().__init__(errors, message)


class MissingFieldError(NotAllowedError, MailRequestError):
    """`quickEmail` without its subject or body: MISP answers 405 with the errors as its text
    ("subject: Missing field.")."""

    status = 405


class RecipientNotFoundError(NotFoundError):
    """No such user (or not one the caller may contact): identity's 404 "Invalid user"."""

    def __init__(self, message: str = INVALID_USER) -> None:
        super().__init__(message)


class EmailingDisabledError(InvalidFieldsError):
    """MISP.disable_emailing is on: the failure envelope with the reason as its errors."""

    def __init__(self, message: str = EMAILING_DISABLED) -> None:
        super().__init__(message, message)
