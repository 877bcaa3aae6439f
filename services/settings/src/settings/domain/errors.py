"""What the settings service refuses, in words MISP clients understand: each error is a kind of
the platform's (misp_platform.errors), which the API answers with MISP's status and shape."""

from __future__ import annotations

from misp_platform.errors import (
    DomainError,
    ForbiddenError,
    InvalidFieldsError,
    NotAllowedError,
    NotFoundError,
)


class SettingsDomainError(DomainError):
    """A refusal; its kind (the platform's) says how MISP answers it."""


class _Refused(SettingsDomainError, InvalidFieldsError):
    """The failure envelope (MISP's 403), the message as its errors and its message."""

    def __init__(self, message: str) -> None:
        super().__init__(message, message)


class UnknownSettingError(SettingsDomainError, NotFoundError):
    """No such setting in the catalogue (MISP: 404 "Setting X is invalid.")."""


class RedactedSettingError(SettingsDomainError, ForbiddenError):
    """A redacted setting's value is never shown (MISP: 403)."""


class CliOnlySettingError(SettingsDomainError, NotAllowedError):
    """Only the CLI may change this setting (MISP: 405)."""


class InvalidSettingValueError(_Refused):
    """The value has the wrong shape or type, or fails the setting's test (MISP: 403, the old
    value stays in force)."""


class NoChangeError(_Refused):
    """`*****` submitted for a redacted value: nothing to change (MISP: 403 "No change.")."""


class InvalidRuleError(_Refused):
    """An import regexp or allowlist entry that cannot be used (invalid or non-linear regex)."""


class EntryNotFoundError(SettingsDomainError, NotFoundError):
    """No blocklist, regexp or allowlist entry with that id or uuid (404, the list's text)."""
