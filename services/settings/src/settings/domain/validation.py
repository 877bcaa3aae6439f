"""Validating a server setting as MISP does: casting a submitted value to the setting's type,
running the test its catalogue row names (`validation`), and the warnings MISP's settings page
shows for valid but risky values.

The catalogue (`misp_contracts.settings_catalogue`) is data that every service reads and names
each setting's test; only the settings service validates, so the functions behind the names
live here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from misp_contracts.settings_catalogue import SettingDefinition, Validation

NOT_SET = "Value not set."
NOT_A_NUMBER = "This setting has to be a number."
NOT_A_BOOLEAN = "Value is not a boolean, make sure that you convert 'true' to true for example."
NOT_A_SCALAR = 'Invalid input. Expected: {"value": "new_setting"}'
NOT_A_STRING = "This setting has to be a string."
# A string setting is bounded in bytes before it becomes an event (the cap of one Kafka message).
MAX_VALUE_BYTES = 65535

_PHP_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE,
                    "u": 0, "D": 0}
_BRACKET_DELIMITERS = {"(": ")", "[": "]", "{": "}", "<": ">"}


def compile_php_regex(pattern: str) -> re.Pattern[str]:
    """Compile a delimited PCRE pattern as MISP stores them (`/.../i`); ValueError if invalid."""
    pattern = pattern.lstrip()
    if len(pattern) < 2:
        raise ValueError("empty regex")
    delimiter = pattern[0]
    if delimiter.isalnum() or delimiter == "\\" or delimiter.isspace():
        raise ValueError("a regex delimiter must not be alphanumeric, a backslash or a space")
    end = pattern.rfind(_BRACKET_DELIMITERS.get(delimiter, delimiter))
    if end <= 0:
        raise ValueError(f"no ending delimiter {delimiter!r} found")
    flags = 0
    for modifier in pattern[end + 1:]:
        if modifier not in _PHP_REGEX_FLAGS:
            raise ValueError(f"unknown modifier {modifier!r}")
        flags |= _PHP_REGEX_FLAGS[modifier]
    try:
        return re.compile(pattern[1:end], flags)
    except re.error as exc:
        raise ValueError(str(exc)) from exc


# The salt shipped in MISP's config.default.php: a known value, so never acceptable.
_MISP_DEFAULT_SALT = "Rooraenietu8Eeyo<Qu2eeNfterd-dd+"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _test_for_empty(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else NOT_SET


def _test_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else NOT_A_BOOLEAN


def _test_numeric(value: Any) -> str | None:
    return None if _is_number(value) else NOT_A_NUMBER


def _test_positive_int(value: Any) -> str | None:
    if _is_whole(value) and value >= 0:
        return None
    return "The value has to be a whole number greater or equal 0."


def _test_at_least_one(value: Any) -> str | None:
    if _is_whole(value) and value >= 1:
        return None
    return "The value has to be a whole number greater or equal 1."


def _test_port(value: Any) -> str | None:
    if not _is_number(value):
        return NOT_A_NUMBER
    return None if 21 <= value <= 65535 else "Make sure that you pick a valid port number."


def _test_passwordlength(value: Any) -> str | None:
    if not _is_number(value):
        return NOT_A_NUMBER
    if value < 0:
        return ("Length cannot be negative, set a positive integer or 0 "
                "(to choose the default option).")
    return None


def _test_regex(value: Any) -> str | None:
    if not isinstance(value, str):
        return "Invalid regex."
    if not value:
        return None
    try:
        compile_php_regex(value)
    except ValueError:
        return "Invalid regex."
    return None


def _test_options(value: Any) -> str | None:
    return None  # the options themselves are checked for every setting that has some


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def _test_uuid(value: Any) -> str | None:
    return None if isinstance(value, str) and _UUID.match(value) else "Invalid UUID."


_PROTOCOL = re.compile(r"^https?://", re.I)
_BASEURL = re.compile(r"^https?://[\w\-.]+(:[0-9]+)?(/[a-z0-9_\-.]+)*$", re.I)


def _test_url(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return NOT_SET
    if not _PROTOCOL.match(value):
        return "Invalid baseurl, please make sure that the protocol is set."
    return None


def _test_baseurl(value: Any) -> str | None:
    if value == "":
        return None  # unset: links are then built from the request
    if not isinstance(value, str) or not _PROTOCOL.match(value):
        return "Invalid baseurl, please make sure that the protocol is set."
    if not _BASEURL.match(value):
        return 'Invalid baseurl, it has to be in the "https://FQDN" format.'
    return None


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _test_email(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return NOT_SET
    return None if _EMAIL.match(value) else "Invalid e-mail address."


_PATH = re.compile(r"^[\w\-.:/~]+$")


def _test_path(value: Any) -> str | None:
    if value == "":
        return None
    return None if isinstance(value, str) and _PATH.match(value) else (
        "Invalid characters in the path.")


def _test_salt(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return NOT_SET
    if len(value) < 32:
        return "The salt has to be an at least 32 byte long string."
    if value == _MISP_DEFAULT_SALT:
        return ("This is the default salt shipped with the application and is therefore "
                "unsecure.")
    return None


def _test_debug(value: Any) -> str | None:
    if value in (0, 1, 2) and _is_whole(value):
        return None
    return "This setting has to be a number between 0 and 2, with 0 disabling debug mode."


# The function behind each test a catalogue row can name (a unit test checks none is missing).
TESTS: dict[Validation, Callable[[Any], str | None]] = {
    "test_for_empty": _test_for_empty, "test_bool": _test_bool, "test_numeric": _test_numeric,
    "test_positive_int": _test_positive_int, "test_at_least_one": _test_at_least_one,
    "test_port": _test_port, "test_passwordlength": _test_passwordlength,
    "test_regex": _test_regex, "test_options": _test_options, "test_uuid": _test_uuid,
    "test_url": _test_url, "test_baseurl": _test_baseurl, "test_email": _test_email,
    "test_path": _test_path, "test_salt": _test_salt, "test_debug": _test_debug,
    "test_live": _test_bool, "test_disable_email": _test_bool,
}

# Valid values that MISP's settings page still flags (in red/yellow): warnings, not errors.
WARNINGS: dict[Validation, Callable[[Any], str | None]] = {
    "test_debug": lambda v: None if v == 0 else (
        "This setting has to be set to 0 on production systems. Ignore this warning if this "
        "is not the case."),
    "test_live": lambda v: None if v else "MISP disabled.",
    "test_disable_email": lambda v: "E-mailing is blocked." if v else None,
}


class _CastError(Exception):
    pass


def _cast(type_: str, value: Any) -> Any:
    """MISP-style casting of a submitted value to the setting's type (`_CastError` if it can't)."""
    if type_ == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
            return value.lower() in ("true", "1")
        raise _CastError
    if type_ == "numeric":
        if isinstance(value, bool):
            raise _CastError
        number: float
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            number = value
        elif isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    number = float(value)
                except ValueError:
                    raise _CastError from None
        else:
            raise _CastError
        if not math.isfinite(number):
            raise _CastError
        return int(number) if number.is_integer() else number
    if isinstance(value, bool):  # a string setting: PHP would make it "1" or ""
        raise _CastError
    if isinstance(value, int | float):
        return str(value)
    return value


def validate(definition: SettingDefinition, raw_value: Any) -> tuple[Any, str | None]:
    """Cast a submitted value to the setting's type and run its test.

    Returns `(value, None)` when valid, else `(value as far as it could be cast, message)`:
    MISP answers a failed test with the test's message (or the setting's `errorMessage`).
    Strings are trimmed; numbers are accepted from strings; booleans from true/false/1/0.
    """
    if isinstance(raw_value, list | dict):
        return raw_value, NOT_A_SCALAR
    value = raw_value.strip() if isinstance(raw_value, str) else raw_value
    if value is None or value == "":
        if definition.null_allowed:
            return ("" if value == "" and definition.type == "string" else None), None
        if value is None or definition.type != "string":
            return value, definition.error_message or NOT_SET
    try:
        value = _cast(definition.type, value)
    except _CastError:
        if definition.type == "string":
            message: str | None = NOT_A_STRING
        else:  # the test's own message says best what is wrong ("has to be a number ...")
            message = TESTS[definition.validation](value)
            message = message or (NOT_A_NUMBER if definition.type == "numeric" else NOT_A_BOOLEAN)
        return value, definition.error_message or message
    if isinstance(value, str) and len(value.encode("utf-8", "replace")) > MAX_VALUE_BYTES:
        return value, f"The value can be at most {MAX_VALUE_BYTES} bytes."
    error = TESTS[definition.validation](value)
    if error is None and definition.options is not None and str(value) not in definition.options:
        error = ("Invalid option, the value has to be one of: "
                 + ", ".join(definition.options) + ".")
    if error is not None and definition.error_message:
        error = definition.error_message
    return value, error


def diagnose(definition: SettingDefinition, value: Any) -> str | None:
    """What MISP's settings page says about a current value: its error, or a warning, or None."""
    cast, error = validate(definition, value)
    if error is not None:
        return error
    warning = WARNINGS.get(definition.validation)
    return warning(cast) if warning is not None else None
