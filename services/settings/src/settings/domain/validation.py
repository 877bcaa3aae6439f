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
from collections.abc import Callable, Collection
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
    if _is_number(value):
        return None  # MISP trims the number's text: a numeric setting is never "not set"
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


# --- MISP's other tests ----------------------------------------------------------------------
# MISP checks some values against its own files, directories and database (its webroot, the
# executables of its host, its tag collections). This product has none of those: such tests check
# the value's form here, and MISP's message answers a value of the wrong form.


def _test_none(value: Any) -> str | None:
    return None  # MISP names no test: any value of the setting's type (and options) will do


def _test_whole_numeric(value: Any) -> str | None:
    """MISP's testForNumeric, and a whole number >= 0 (a count or a duration this product uses)."""
    if not _is_number(value):
        return NOT_A_NUMBER
    return None if _is_whole(value) and value >= 0 else (
        "The value has to be a whole number greater or equal 0.")


def _test_language(value: Any) -> str | None:
    return None  # the options (eng and MISP's translations) are checked for every setting


# The refusal of a value outside the options, when MISP's test has its own words for it.
OPTION_ERRORS: dict[Validation, str] = {"test_language": "Invalid language."}


NO_ORGANISATION = "No organisation selected"
INVALID_ORGANISATION = "Invalid organisation"


def _test_local_org(value: Any) -> str | None:
    """0 (no organisation) or the id of a local organisation (checked against the local
    organisations when the caller knows them: `validate(..., local_orgs=...)`)."""
    return None if _is_whole(value) and value >= 0 else INVALID_ORGANISATION


def _test_local_org_strict(value: Any) -> str | None:
    if value == 0 and _is_whole(value):
        return NO_ORGANISATION
    return _test_local_org(value)


def _test_tag_collection(value: Any) -> str | None:
    # Tag collections live outside this product: a collection id (0 for none) is all we check.
    return None if _is_whole(value) and value >= 0 else "Invalid tag_collection."


CORRELATION_ENGINES = ("Default", "NoAcl")


def _test_correlation_engine(value: Any) -> str | None:
    if value in CORRELATION_ENGINES:
        return None
    return ("Please select a valid option from the list of available engines: "
            + ", ".join(CORRELATION_ENGINES))


PHAR = "Phar protocol not allowed."
_ABSOLUTE_PATH = re.compile(r"^/[\w\-.:/~+@ ]*$")


def _test_bin_exec(value: Any) -> str | None:
    """MISP runs the file to see it is an executable; here: an absolute path."""
    if not isinstance(value, str):
        return "Binary file not executable."
    if value.startswith("phar://"):
        return PHAR
    if value == "":
        return None
    return None if _ABSOLUTE_PATH.match(value) and not value.endswith("/") else (
        "Binary file not executable.")


def _test_ca_bundle(value: Any) -> str | None:
    """MISP opens the file; here: an absolute path to a .pem file."""
    if not isinstance(value, str) or not _ABSOLUTE_PATH.match(value) or value.endswith("/"):
        return "Invalid file path or file not accessible."
    return None if value.endswith(".pem") else "File has to be in .pem format."


def _test_writable_dir(value: Any) -> str | None:
    """MISP checks the directory exists and is writable; here: an absolute path (or s3://)."""
    if not isinstance(value, str):
        return "Not a valid directory."
    if value.startswith("phar://"):
        return PHAR
    if value.startswith("s3://"):
        return None
    return None if _ABSOLUTE_PATH.match(value) else "Not a valid directory."


def _test_gpg_binary(value: Any) -> str | None:
    """MISP checks the file exists (empty: its default path); here: an absolute path."""
    if value == "":
        return None
    if isinstance(value, str) and _ABSOLUTE_PATH.match(value) and not value.endswith("/"):
        return None
    return "Could not find the GnuPG executable at the defined location."


# AppModel::checkFilename: a file name without a directory part.
_FILENAME = re.compile(r"^([a-z0-9_.]+[a-z0-9_.\- ]*[a-z0-9_.\-]|[a-z0-9_.])+$", re.I)


def _test_file_name(value: Any) -> str | None:
    """MISP's custom images, stylesheet and terms file: a file name (MISP also checks that the
    file is in its webroot or files directory, which this product does not have)."""
    if not isinstance(value, str) or not value.strip():
        return NOT_SET
    return None if _FILENAME.match(value) else "Invalid filename."


def _test_style_file(value: Any) -> str | None:
    return None if value == "" else _test_file_name(value)


_RESET_TEXT_PARTS = ("$password", "$username", "$misp")


def _test_password_reset_text(value: Any) -> str | None:
    if isinstance(value, str) and all(part in value for part in _RESET_TEXT_PARTS):
        return None
    return ("The text served to the users must include the following replacement strings: "
            '"$username", "$password", "$misp"')


SESSION_HANDLERS = ("php", "database", "cake", "cache")


def _test_session_defaults(value: Any) -> str | None:
    if value in SESSION_HANDLERS:
        return None
    return ("Please choose a valid session handler. Recommended values: php or database. "
            "Alternate options are cake (cakephp file based sessions) and cache.")


def _test_debug_admin(value: Any) -> str | None:
    return None if isinstance(value, bool) else "This setting has to be either true or false."


def _test_rpz_behaviour(value: Any) -> str | None:
    if not _is_number(value):
        return NOT_A_NUMBER
    if 0 <= value <= 5:
        return None
    return ("Invalid setting, valid range is 0-5 (0 = DROP, 1 = NXDOMAIN, 2 = NODATA, "
            "3 = walled garden, 4 = PASSTHRU, 5 = TCP-only.")


_RPZ_DURATION = re.compile(r"^[0-9]+[mhdw]?$", re.I)


def _test_rpz_duration(value: Any) -> str | None:
    """Seconds, or a number with a scale letter (m, h, d, w); MISP's own check lets more through."""
    if _is_number(value) and value >= 0:
        return None
    if isinstance(value, str) and _RPZ_DURATION.match(value):
        return None
    return ("Negative seconds found. The following formats are accepted: seconds (positive "
            "integer), or duration (positive integer) followed by a letter denoting scale (such "
            "as m, h, d, w for minutes, hours, days, weeks)")


_RPZ_SERIAL = re.compile(r"^((\$date(\d*)|\$time|\d*))$")


def _test_rpz_serial(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return NOT_SET
    return None if _RPZ_SERIAL.match(value) else "Invalid format."


def _test_encryption_key(value: Any) -> str | None:
    if isinstance(value, str) and len(value) >= 32:
        return None
    return "Encryption key must be at least 32 chars long."


# The function behind each test a catalogue row can name (a unit test checks none is missing).
TESTS: dict[Validation, Callable[[Any], str | None]] = {
    "test_for_empty": _test_for_empty, "test_bool": _test_bool, "test_numeric": _test_numeric,
    "test_positive_int": _test_positive_int, "test_at_least_one": _test_at_least_one,
    "test_port": _test_port, "test_passwordlength": _test_passwordlength,
    "test_regex": _test_regex, "test_options": _test_options, "test_uuid": _test_uuid,
    "test_url": _test_url, "test_baseurl": _test_baseurl, "test_email": _test_email,
    "test_path": _test_path, "test_salt": _test_salt, "test_debug": _test_debug,
    "test_live": _test_bool, "test_disable_email": _test_bool,
    "test_none": _test_none, "test_whole_numeric": _test_whole_numeric,
    "test_bool_false": _test_bool, "test_bool_true": _test_bool,
    "test_language": _test_language, "test_local_org": _test_local_org,
    "test_local_org_strict": _test_local_org_strict, "test_tag_collection": _test_tag_collection,
    "test_correlation_engine": _test_correlation_engine, "test_bin_exec": _test_bin_exec,
    "test_ca_bundle": _test_ca_bundle, "test_writable_dir": _test_writable_dir,
    "test_gpg_binary": _test_gpg_binary, "test_custom_image": _test_file_name,
    "test_style_file": _test_style_file, "test_terms_file": _test_file_name,
    "test_password_reset_text": _test_password_reset_text,
    "test_session_defaults": _test_session_defaults, "test_cookie_timeout": _test_numeric,
    "test_paranoid_skip_db": _test_bool, "test_disable_cache": _test_bool,
    "test_debug_admin": _test_debug_admin, "test_zmq_port": _test_numeric,
    "test_rpz_behaviour": _test_rpz_behaviour, "test_rpz_duration": _test_rpz_duration,
    "test_rpz_serial": _test_rpz_serial, "test_encryption_key": _test_encryption_key,
}

# The value of another setting, for the warnings that compare two (None: its default unknown).
Lookup = Callable[[str], Any]

ADVISED_OFF = ("It is highly recommended that this setting is disabled. Make sure you understand "
               "the impact of having this setting turned on.")
ADVISED_ON = ("It is highly recommended that this setting is enabled. Make sure you understand "
              "the impact of having this setting turned off.")


def _cookie_shorter_than_session(value: Any, other: Lookup) -> str | None:
    timeout = other("Session.timeout")
    if _is_number(timeout) and value != 0 and value < timeout:
        return ("The cookie timeout is currently lower than the session timeout. This will "
                "invalidate the cookie before the session expires.")
    return None


def _paranoid_without_skip_db(value: Any, other: Lookup) -> str | None:
    if other("MISP.log_paranoid") is True and not value:
        return ("Perhaps consider skipping the database when using paranoid mode. A great "
                "number of entries will be added to your log database otherwise that will lead "
                "to performance degradation.")
    return None


# Valid values that MISP's settings page still flags (in red/yellow): warnings, not errors. MISP
# also refuses them on an edit without `force`; here the edit goes through and the report says.
WARNINGS: dict[Validation, Callable[[Any, Lookup], str | None]] = {
    "test_debug": lambda v, _: None if v == 0 else (
        "This setting has to be set to 0 on production systems. Ignore this warning if this "
        "is not the case."),
    "test_live": lambda v, _: None if v else "MISP disabled.",
    "test_disable_email": lambda v, _: "E-mailing is blocked." if v else None,
    "test_bool_false": lambda v, _: ADVISED_OFF if v else None,
    "test_bool_true": lambda v, _: None if v else ADVISED_ON,
    "test_disable_cache": lambda v, _: "Export caches are disabled." if v else None,
    "test_debug_admin": lambda v, _: (
        "Enabling debug is not recommended. Turn this on temporarily if you need to see a stack "
        "trace to debug an issue, but make sure this is not left on.") if v else None,
    "test_zmq_port": lambda v, _: None if 49152 <= v <= 65535 else (
        "It is recommended that you pick a port number in the dynamic range (49152-65535). "
        "However, if you have a valid reason to use a different port, ignore this message."),
    "test_cookie_timeout": _cookie_shorter_than_session,
    "test_paranoid_skip_db": _paranoid_without_skip_db,
}
# MISP's errorMessage replaces the warning of these (testBool* take it as their message).
_ERROR_MESSAGE_WARNS: frozenset[Validation] = frozenset({"test_bool_false", "test_bool_true"})


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


def validate(definition: SettingDefinition, raw_value: Any, *,
             local_orgs: Collection[int] | None = None) -> tuple[Any, str | None]:
    """Cast a submitted value to the setting's type and run its test.

    Returns `(value, None)` when valid, else `(value as far as it could be cast, message)`:
    MISP answers a failed edit with the test's own message. Strings are trimmed; numbers are
    accepted from strings; booleans from true/false/1/0. `local_orgs`, when the caller knows
    them, are the ids a local-organisation setting may take (besides 0 where MISP allows it).
    """
    if isinstance(raw_value, list | dict):
        return raw_value, NOT_A_SCALAR
    value = raw_value.strip() if isinstance(raw_value, str) else raw_value
    if value is None or value == "":
        if definition.null_allowed:
            return ("" if value == "" and definition.type == "string" else None), None
        if value is None or definition.type != "string":
            return value, NOT_SET
    try:
        value = _cast(definition.type, value)
    except _CastError:
        if definition.type == "string":
            message: str | None = NOT_A_STRING
        else:  # the test's own message says best what is wrong ("has to be a number ...")
            message = TESTS[definition.validation](value)
            message = message or (NOT_A_NUMBER if definition.type == "numeric" else NOT_A_BOOLEAN)
        return value, message
    if isinstance(value, str) and len(value.encode("utf-8", "replace")) > MAX_VALUE_BYTES:
        return value, f"The value can be at most {MAX_VALUE_BYTES} bytes."
    error = TESTS[definition.validation](value)
    if error is None and definition.options is not None and str(value) not in definition.options:
        error = OPTION_ERRORS.get(definition.validation) or (
            "Invalid option, the value has to be one of: " + ", ".join(definition.options) + ".")
    if (error is None and local_orgs is not None and definition.validation in LOCAL_ORG_TESTS
            and value != 0 and value not in local_orgs):
        error = INVALID_ORGANISATION
    return value, error


# The tests whose value is a local organisation's id (MISP offers the local organisations).
LOCAL_ORG_TESTS: frozenset[Validation] = frozenset({"test_local_org", "test_local_org_strict"})


def diagnose(definition: SettingDefinition, value: Any,
             other: Lookup | None = None) -> str | None:
    """What MISP's settings page says about a set value: its error, or a warning, or None.
    `other` gives the values of other settings, for the warnings that compare two."""
    cast, error = validate(definition, value)
    if error is not None:
        return error
    if cast is None or cast == "":
        return None  # unset (null allowed): nothing to warn about
    warning = WARNINGS.get(definition.validation)
    if warning is None:
        return None
    message = warning(cast, other or (lambda _name: None))
    if message is not None and definition.error_message \
            and definition.validation in _ERROR_MESSAGE_WARNS:
        return definition.error_message
    return message
