"""MISP's wire conventions: response shapes, error shapes, CakePHP URL parameters and bodies."""

from misp_platform.misp.domain_errors import as_misp, to_misp
from misp_platform.misp.errors import (
    INVALID_JSON,
    NO_PERMISSION,
    BadRequest,
    Conflict,
    Forbidden,
    InvalidJSON,
    MethodNotAllowed,
    MispHTTPError,
    NotFound,
    ValidationFailed,
    install_error_handlers,
)
from misp_platform.misp.params import (
    MispId,
    MispPathMiddleware,
    NamedParams,
    read_body,
    unwrap,
)
from misp_platform.misp.responses import (
    MispJSONResponse,
    failure,
    message_body,
    misp_record,
    render_value,
    success,
)

__all__ = [
    "INVALID_JSON",
    "NO_PERMISSION",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "InvalidJSON",
    "MethodNotAllowed",
    "MispHTTPError",
    "MispId",
    "MispJSONResponse",
    "MispPathMiddleware",
    "NamedParams",
    "NotFound",
    "ValidationFailed",
    "as_misp",
    "failure",
    "install_error_handlers",
    "message_body",
    "misp_record",
    "read_body",
    "render_value",
    "success",
    "to_misp",
    "unwrap",
]
