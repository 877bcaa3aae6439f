"""Why a command on an organisation is refused."""

from __future__ import annotations


class OrgsError(Exception):
    """Base of the orgs domain's refusals."""


class OrganisationNotFoundError(OrgsError):
    """No (visible, not deleted) organisation with that id, uuid or name."""


class OrganisationValidationError(OrgsError):
    """Bad field values, in Cake's `{"field": ["message"]}` shape."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


class OrganisationRefusedError(OrgsError):
    """A well-formed command the organisation's state refuses (users left, merge running...)."""

    def __init__(self, message: str, errors: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors if errors is not None else message


class OrganisationInUseError(OrganisationRefusedError):
    """Users still belong to the organisation (as far as orgs' projection of them knows: a
    caller may have just moved or deleted them in identity)."""


class InvalidLogoError(OrgsError):
    """The upload is not an acceptable PNG (content, size or dimensions)."""
