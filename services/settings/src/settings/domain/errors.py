"""What the settings service refuses, in words MISP clients understand."""

from __future__ import annotations


class SettingsDomainError(Exception):
    """A refusal; the API maps each subclass to MISP's status and shape."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class UnknownSettingError(SettingsDomainError):
    """No such setting in the catalogue (MISP: 404 "Setting X is invalid.")."""


class RedactedSettingError(SettingsDomainError):
    """A redacted setting's value is never shown (MISP: 403)."""


class CliOnlySettingError(SettingsDomainError):
    """Only the CLI may change this setting (MISP: 405)."""


class InvalidSettingValueError(SettingsDomainError):
    """The value has the wrong shape or type, or fails the setting's test (MISP: 403)."""


class NoChangeError(SettingsDomainError):
    """`*****` submitted for a redacted value: nothing to change (MISP: 403 "No change.")."""


class InvalidRuleError(SettingsDomainError):
    """An import regexp or allowlist entry that cannot be used (invalid or non-linear regex)."""


class EntryNotFoundError(SettingsDomainError):
    """No blocklist, regexp or allowlist entry with that id or uuid."""
