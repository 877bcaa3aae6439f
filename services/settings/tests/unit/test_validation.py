"""Validating settings like MISP: casting, each test's message, warnings, PHP's regexes."""

from typing import Any, get_args

import pytest

from misp_contracts.settings_catalogue import (
    DEFAULT_PASSWORD_COMPLEXITY,
    SETTINGS,
    SettingDefinition,
    Validation,
    definition,
)
from settings.domain.validation import (
    NOT_A_BOOLEAN,
    NOT_A_NUMBER,
    NOT_SET,
    TESTS,
    WARNINGS,
    compile_php_regex,
    diagnose,
    validate,
)


def test_every_test_a_setting_can_name_has_a_function() -> None:
    assert set(TESTS) == set(get_args(Validation))
    assert set(WARNINGS) <= set(TESTS)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_default_passes_its_own_validation(setting: SettingDefinition) -> None:
    value, error = validate(setting, setting.default)

    assert error is None
    assert value == setting.default


@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("MISP.log_auth", "true", True), ("MISP.log_auth", "false", False),
    ("MISP.log_auth", "FALSE", False), ("MISP.log_auth", "1", True), ("MISP.log_auth", "0", False),
    ("MISP.log_auth", 1, True), ("MISP.log_auth", False, False), ("MISP.log_auth", " true ", True),
    ("SecureAuth.amount", "10", 10), ("SecureAuth.amount", 10, 10), ("SecureAuth.amount", " 7 ", 7),
    ("SecureAuth.amount", 8.0, 8), ("SecureAuth.amount", "8.0", 8),
    ("MISP.org", "  ACME  ", "ACME"), ("MISP.default_event_distribution", 3, "3"),
    ("MISP.default_attribute_distribution", "event", "event"), ("debug", "2", 2),
    ("MISP.baseurl", "https://misp.example.org", "https://misp.example.org"),
    ("MISP.baseurl", "http://10.0.0.1:8080/misp", "http://10.0.0.1:8080/misp"),
    ("MISP.baseurl", "", ""), ("Proxy.port", "", None), ("Proxy.port", None, None),
    ("Security.advanced_authkeys_validity", "90", 90), ("Proxy.method", "Digest", "Digest"),
    ("MISP.uuid", "5f1e7b2c-0a1b-4c2d-8e3f-123456789abc", "5f1e7b2c-0a1b-4c2d-8e3f-123456789abc"),
    ("Security.password_policy_complexity", "/^.{20,}$/i", "/^.{20,}$/i"),
    ("Security.password_policy_length", 0, 0),
    ("Security.salt", "x" * 32, "x" * 32),
])
def test_valid_values_are_cast(name: str, raw: Any, expected: Any) -> None:
    value, error = validate(definition(name), raw)

    assert error is None
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("MISP.log_auth", "yes", NOT_A_BOOLEAN), ("MISP.log_auth", 2, NOT_A_BOOLEAN),
    ("MISP.log_auth", "", NOT_SET), ("MISP.log_auth", None, NOT_SET),
    ("MISP.max_correlations_per_event", "many",
     "The value has to be a whole number greater or equal 0."),
    ("SecureAuth.amount", "-1", "The value has to be a whole number greater or equal 0."),
    ("SecureAuth.amount", True, "The value has to be a whole number greater or equal 0."),
    ("Security.password_policy_length", "abc", NOT_A_NUMBER),
    ("Security.password_policy_length", -3,
     "Length cannot be negative, set a positive integer or 0 (to choose the default option)."),
    ("Security.password_policy_complexity", "/(unclosed/", "Invalid regex."),
    ("Security.password_policy_complexity", "no delimiters", "Invalid regex."),
    ("MISP.org", "   ", NOT_SET), ("MISP.org", True, "This setting has to be a string."),
    ("MISP.baseurl", "misp.example.org",
     "Invalid baseurl, please make sure that the protocol is set."),
    ("MISP.baseurl", "https://misp.example.org/",
     'Invalid baseurl, it has to be in the "https://FQDN" format.'),
    ("MISP.uuid", "not-a-uuid", "Invalid UUID."),
    ("MISP.email", "nobody", "Invalid e-mail address."),
    ("MISP.default_event_distribution", "4",
     "Invalid option, the value has to be one of: 0, 1, 2, 3."),
    ("debug", 3, "This setting has to be a number between 0 and 2, with 0 disabling debug mode."),
    ("debug", "x", "This setting has to be a number between 0 and 2, with 0 disabling debug mode."),
    ("Proxy.port", 70000, "Make sure that you pick a valid port number."),
    ("Security.salt", "short", "The salt has to be an at least 32 byte long string."),
    ("Security.salt", "Rooraenietu8Eeyo<Qu2eeNfterd-dd+",
     "This is the default salt shipped with the application and is therefore unsecure."),
    ("SimpleBackgroundJobs.default_max_attempts", 0,
     "The value has to be a whole number greater or equal 1."),
    ("MISP.org", ["a"], 'Invalid input. Expected: {"value": "new_setting"}'),
])
def test_invalid_values_answer_the_tests_message(name: str, raw: Any, message: str) -> None:
    _, error = validate(definition(name), raw)

    assert error == message


def test_a_setting_error_message_replaces_the_tests_own() -> None:
    custom = definition("SecureAuth.amount").model_copy(update={"error_message": "Nope."})

    assert validate(custom, "abc") == ("abc", "Nope.")


def test_diagnose_warns_about_valid_but_risky_values() -> None:
    assert diagnose(definition("debug"), 0) is None
    assert diagnose(definition("debug"), 1) == (
        "This setting has to be set to 0 on production systems. Ignore this warning if this "
        "is not the case.")
    assert diagnose(definition("MISP.live"), False) == "MISP disabled."
    assert diagnose(definition("MISP.disable_emailing"), True) == "E-mailing is blocked."
    assert diagnose(definition("MISP.disable_emailing"), False) is None
    assert diagnose(definition("SecureAuth.amount"), "x") == (
        "The value has to be a whole number greater or equal 0.")


@pytest.mark.parametrize(("password", "accepted"), [
    ("Password1", True), ("Password!", True), ("password1", False), ("PASSWORD1", False),
    ("Passwordonly", False), ("sixteen chars ok", True), ("a" * 16, True),
])
def test_the_default_complexity_regex_behaves_as_in_misp(password: str, accepted: bool) -> None:
    assert bool(compile_php_regex(DEFAULT_PASSWORD_COMPLEXITY).search(password)) is accepted


def test_php_regex_modifiers_are_honoured() -> None:
    assert compile_php_regex("/^abc$/i").search("ABC")
    assert compile_php_regex("#a.b#s").search("a\nb")
    assert compile_php_regex("{^x}").search("xy")
    with pytest.raises(ValueError):
        compile_php_regex("/abc/Q")


def test_a_string_value_is_bounded_in_bytes_not_characters() -> None:
    text_setting = definition("MISP.org")
    assert validate(text_setting, "é" * 32767) == ("é" * 32767, None)  # 65,534 bytes
    _, error = validate(text_setting, "é" * 32768)
    assert error == "The value can be at most 65535 bytes."
