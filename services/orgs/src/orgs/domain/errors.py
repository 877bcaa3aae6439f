"""Why a command on an organisation is refused: kinds of the platform's (misp_platform.errors),
which the API answers as MISP does."""

from __future__ import annotations

from misp_platform.errors import DomainError, InvalidFieldsError, NotFoundError

INVALID_ORG = "Invalid organisation"


class OrgsError(DomainError):
    """Base of the orgs domain's refusals."""


class OrganisationNotFoundError(OrgsError, NotFoundError):
    """No (visible, not deleted) organisation with that id, uuid or name (404)."""

    def __init__(self, message: str = INVALID_ORG) -> None:
        super().__init__(message)


class OrganisationValidationError(OrgsError, InvalidFieldsError):
    """Bad field values, in Cake's `{"field": ["message"]}` shape (the failure envelope, with
    the route's "Could not <action> Organisation")."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)


class OrganisationRefusedError(OrgsError, InvalidFieldsError):
    """A well-formed command the organisation's state refuses (users left, merge running...):
    the failure envelope with `message`, and `errors` (the message when none is given)."""

    def __init__(self, message: str, errors: object = None) -> None:
        super().__init__(errors if errors is not None else message, message)


class OrganisationInUseError(OrganisationRefusedError):
    """Users still belong to the organisation (as far as orgs' projection of them knows: a
    caller may have just moved or deleted them in identity)."""


class InvalidLogoError(OrgsError, InvalidFieldsError):
    """The upload is not an acceptable PNG (content or dimensions): 400 (orgs' own route, not
    MISP's), the reason as the `logo` field's error; the exception's text is the reason."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__({"logo": [message]})
        self.message = message
        self.args = (message,)


class LogoTooLargeError(InvalidLogoError):
    """The upload passes the size limit (413)."""

    status = 413
