"""User settings (MISP's `UserSetting`): the names MISP knows, who may set the restricted ones,
and how a posted value is read (MISP stores JSON text and decodes it on every read)."""

from __future__ import annotations

import ast
import contextlib
import json
from typing import Any

# UserSetting::VALID_SETTINGS: name -> the permission it needs (None: any user).
VALID_SETTINGS: dict[str, str | None] = {
    "publish_alert_filter": None,
    "dashboard_access": "perm_site_admin",
    "dashboard": None,
    "homepage": None,
    "default_restsearch_parameters": None,
    "tag_numerical_value_override": None,
    "event_index_hide_columns": None,
    "periodic_notification_filters": None,
}
MAX_VALUE_BYTES = 64 * 1024

INVALID_SETTING = "Invalid setting."
INVALID_USER_SETTING = "Invalid user setting."
NEEDS_SETTING_AND_VALUE = "This endpoint expects both a setting and a value to be set."
SETTING_DELETED = "Setting deleted."


def restricted_message(permission: str) -> str:
    return f"This setting is restricted and requires the following permission(s): {permission}"


def is_valid(name: Any) -> bool:
    return isinstance(name, str) and name in VALID_SETTINGS


def missing_permission(name: str, *, is_site_admin: bool, flags: dict[str, bool]) -> str | None:
    """The permission a caller lacks for this setting, or None when they may use it."""
    needed = VALID_SETTINGS.get(name)
    if needed is None or is_site_admin or flags.get(needed):
        return None
    return needed


def parse_value(value: Any) -> tuple[Any, str | None]:
    """The value as it will be read back (a JSON text is decoded, as MISP's afterFind does), or
    an error for a value too large to keep."""
    if isinstance(value, str):
        value = _unwrap_bytes_repr(value)
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    if len(json.dumps(value)) > MAX_VALUE_BYTES:
        return None, f"The value can be at most {MAX_VALUE_BYTES} bytes of JSON."
    return value, None


def _unwrap_bytes_repr(text: str) -> str:
    """PyMISP with orjson installed sends a dict value as `str(orjson.dumps(value))`, the
    Python repr of bytes (`b'{"path":"/x"}'`): take the JSON text out of it. Anything else,
    or a repr whose content is not a JSON object or array, is kept as it is."""
    if not (text.startswith(("b'", 'b"')) and text.endswith(text[1]) and len(text) > 3):
        return text
    try:
        inner = ast.literal_eval(text)
        decoded = inner.decode("utf-8") if isinstance(inner, bytes) else None
        if decoded is not None and isinstance(json.loads(decoded), dict | list):
            return decoded
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError):
        pass
    return text
