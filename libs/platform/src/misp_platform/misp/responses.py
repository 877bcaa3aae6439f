"""MISP's response shapes: record wrappers, value rendering and the success/failure envelopes.

MISP (CakePHP with `PDO::ATTR_STRINGIFY_FETCHES`) renders integer columns as strings, `tinyint(1)`
as booleans and datetimes as `YYYY-MM-DD HH:MM:SS`; clients such as PyMISP rely on it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from starlette.responses import JSONResponse

MISP_DATETIME = "%Y-%m-%d %H:%M:%S"


def render_datetime(value: datetime) -> str:
    """MISP's datetime text; an aware value is shown in UTC (the server's time zone here)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(MISP_DATETIME)


def render_value(value: Any) -> Any:
    """One value as MISP's JSON shows it: ints as strings, bools as bools, datetimes as text."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return render_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return render_value(value.value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): render_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [render_value(v) for v in value]
    if hasattr(value, "model_dump"):  # a pydantic model
        return render_value(value.model_dump())
    return str(value)


def misp_record(model: str, fields: Mapping[str, Any], **assoc: Any) -> dict[str, Any]:
    """`{"<Model>": {...}, "<Assoc>": {...}}` with every value rendered as MISP does.

    An associated value that is a list or an empty list (MISP's `"UserSetting": []`) is kept as is.
    """
    record: dict[str, Any] = {model: render_value(fields)}
    for name, value in assoc.items():
        record[name] = render_value(value)
    return record


def past_tense(action: str) -> str:
    """CakePHP's `<action>d` / `<action>ed` as RestResponseComponent builds it."""
    return f"{action}d" if action.endswith("e") else f"{action}ed"


def success(action: str, singular: str, url: str, id: int | str | None = None,
            message: str | None = None) -> dict[str, Any]:
    """MISP's 200 success envelope (`saveSuccessResponse`); by default "<Singular> <action>d"."""
    text = message if message is not None else f"{singular} {past_tense(action)}"
    body: dict[str, Any] = {"saved": True, "success": True, "name": text, "message": text,
                            "url": url}
    if id is not None:
        body["id"] = render_value(id)
    return body


def failure_message(action: str, singular: str) -> str:
    return f"Could not {action} {singular}"


def failure(action: str, singular: str, url: str, errors: Any,
            id: int | str | None = None, message: str | None = None) -> dict[str, Any]:
    """MISP's failure envelope (`saveFailResponse`), served with HTTP 403.

    `errors` is Cake's validation shape `{"field": ["msg"]}`, a list, or a plain string.
    """
    text = message if message is not None else failure_message(action, singular)
    body: dict[str, Any] = {"saved": False, "name": text, "message": text, "url": url,
                            "errors": errors}
    if id is not None:
        body["id"] = render_value(id)
    return body


def message_body(message: str) -> dict[str, str]:
    """`viewData("string")`: a bare `{"message": ...}`."""
    return {"message": message}


def exception_body(message: str, url: str) -> dict[str, str]:
    """CakePHP's ExceptionRenderer shape for any error status."""
    return {"name": message, "message": message, "url": url}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return render_datetime(value)
    if isinstance(value, date | uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class MispJSONResponse(JSONResponse):
    """Compact JSON, UTF-8 unescaped, datetimes in MISP's format (no int→str: use render_value)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          default=_json_default).encode("utf-8")
