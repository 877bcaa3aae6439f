"""Errors of the jobs domain: kinds of the platform's (misp_platform.errors), which the API
answers as MISP does."""

from __future__ import annotations

from typing import Any

from misp_platform.errors import InvalidFieldsError, NotFoundError


class JobNotFoundError(NotFoundError):
    """No job (or task) with that id (404 with the message: "Invalid job: 7")."""


class JobValidationError(InvalidFieldsError):
    """Bad input: `errors` in Cake's `{"field": ["message"]}` shape; the failure envelope's
    message is every message, joined."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors, "; ".join(m for ms in errors.values() for m in ms))

    def first(self) -> str:
        return str(self)


class JobRefusedError(InvalidFieldsError):
    """A command that the job's status does not allow (cancel a finished job, ...): the failure
    envelope with the message as its errors."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message, message)
        self.details = details
