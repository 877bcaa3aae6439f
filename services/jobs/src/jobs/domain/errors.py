"""Errors of the jobs domain (the API renders them in MISP's shapes)."""

from __future__ import annotations

from typing import Any


class JobNotFoundError(Exception):
    """No job (or task) with that id."""


class JobValidationError(Exception):
    """Bad input: `errors` in Cake's `{"field": ["message"]}` shape."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(m for ms in errors.values() for m in ms))

    def first(self) -> str:
        return str(self)


class JobRefusedError(Exception):
    """A command that the job's status does not allow (cancel a finished job, ...)."""

    def __init__(self, message: str, **details: Any) -> None:
        self.message = message
        self.details = details
        super().__init__(message)
