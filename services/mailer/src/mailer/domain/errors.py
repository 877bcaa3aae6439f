"""The mailer's domain errors (each becomes a MISP 4xx body at the API)."""

from __future__ import annotations

from typing import Any


class MailRequestError(Exception):
    """Bad input: a MISP failure body (`errors` in Cake's shape), 403 unless told otherwise."""

    def __init__(self, errors: Any, *, status: int = 403, message: str | None = None) -> None:
        self.errors = errors
        self.status = status
        self.message = message
        super().__init__(str(errors))


class RecipientNotFoundError(Exception):
    """No such user (or not one the caller may contact)."""


class EmailingDisabledError(Exception):
    """MISP.disable_emailing is on."""
