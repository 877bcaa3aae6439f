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
    ADVISED_OFF,
    ADVISED_ON,
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
    ("MISP.max_correlations_per_event", "many", NOT_A_NUMBER),
    ("SecureAuth.amount", "-1", "The value has to be a whole number greater or equal 0."),
    ("SecureAuth.amount", "2.5", "The value has to be a whole number greater or equal 0."),
    ("SecureAuth.amount", True, NOT_A_NUMBER),
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
    ("Proxy.port", "eighty", NOT_A_NUMBER),
    ("Plugin.Import_services_port", 70000, "Make sure that you pick a valid port number."),
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


def test_an_edit_answers_the_tests_own_message_and_the_report_misp_s_error_message() -> None:
    custom = definition("SecureAuth.amount").model_copy(update={"error_message": "Nope."})
    assert validate(custom, "abc") == ("abc", NOT_A_NUMBER)

    named_param = definition("Security.allow_unsafe_apikey_named_param")
    assert validate(named_param, True) == (True, None)  # a warning, not a refusal
    assert diagnose(named_param, True) == named_param.error_message
    assert named_param.error_message.startswith("You have enabled the passing of API keys")
    assert diagnose(definition("MISP.disable_sighting_loading"), True) == ADVISED_OFF
    assert diagnose(definition("MISP.disable_event_locks"), False) == ADVISED_ON
    assert diagnose(definition("MISP.disable_event_locks"), True) is None


def test_diagnose_warns_about_valid_but_risky_values() -> None:
    assert diagnose(definition("debug"), 0) is None
    assert diagnose(definition("debug"), 1) == (
        "This setting has to be set to 0 on production systems. Ignore this warning if this "
        "is not the case.")
    assert diagnose(definition("MISP.live"), False) == "MISP disabled."
    assert diagnose(definition("MISP.disable_emailing"), True) == "E-mailing is blocked."
    assert diagnose(definition("MISP.disable_emailing"), False) is None
    assert diagnose(definition("SecureAuth.amount"), "x") == NOT_A_NUMBER
    assert diagnose(definition("MISP.disable_cached_exports"), True) == (
        "Export caches are disabled.")
    assert diagnose(definition("site_admin_debug"), True).startswith(
        "Enabling debug is not recommended.")
    assert diagnose(definition("Plugin.ZeroMQ_port"), 50000) is None
    assert diagnose(definition("Plugin.ZeroMQ_port"), 5000).startswith(
        "It is recommended that you pick a port number in the dynamic range")


def test_warnings_that_compare_two_settings_read_the_other() -> None:
    values = {"Session.timeout": 60, "MISP.log_paranoid": True}
    cookie = definition("Session.cookieTimeout")
    assert diagnose(cookie, 30, values.get) == (
        "The cookie timeout is currently lower than the session timeout. This will invalidate "
        "the cookie before the session expires.")
    assert diagnose(cookie, 600, values.get) is None
    assert diagnose(cookie, 0, values.get) is None  # 0: the cookie lasts the browser session
    skip = definition("MISP.log_paranoid_skip_db")
    assert diagnose(skip, False, values.get).startswith("Perhaps consider skipping the database")
    assert diagnose(skip, False, {"MISP.log_paranoid": False}.get) is None
    assert diagnose(skip, True, values.get) is None


@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("MISP.language", "deu", "deu"), ("MISP.correlation_engine", "NoAcl", "NoAcl"),
    ("MISP.python_bin", "/var/www/MISP/venv/bin/python", "/var/www/MISP/venv/bin/python"),
    ("MISP.python_bin", "", ""),
    ("MISP.ca_path", "/etc/ssl/certs/ca.pem", "/etc/ssl/certs/ca.pem"),
    ("MISP.attachments_dir", "/srv/misp/files", "/srv/misp/files"),
    ("MISP.attachments_dir", "s3://bucket", "s3://bucket"),
    ("GnuPG.binary", "/usr/local/bin/gpg2", "/usr/local/bin/gpg2"),
    ("MISP.footer_logo", "logo.png", "logo.png"), ("MISP.custom_css", "", ""),
    ("MISP.custom_css", "theme-dark.css", "theme-dark.css"),
    ("MISP.terms_file", "terms.pdf", "terms.pdf"),
    ("MISP.newUserText", "Hi $username, $password at $misp", "Hi $username, $password at $misp"),
    ("Session.defaults", "database", "database"), ("Session.cookieTimeout", "10080", 10080),
    ("Plugin.RPZ_policy", "3", 3), ("Plugin.RPZ_refresh", "15m", "15m"),
    ("Plugin.RPZ_refresh", "3600", "3600"), ("Plugin.RPZ_serial", "$date01", "$date01"),
    ("Plugin.RPZ_serial", "$time", "$time"), ("Plugin.RPZ_serial", "2024010100", "2024010100"),
    ("MISP.default_event_tag_collection", "4", 4), ("Plugin.Sightings_anonymise_as", 0, 0),
    ("Plugin.ZeroMQ_redis_database", 2, "2"), ("Plugin.Enrichment_timeout", "15", 15),
    ("MISP.ssdeep_correlation_threshold", 40, 40), ("Security.min_tls_version", "", ""),
    ("Security.min_tls_version", "tlsv1_3", "tlsv1_3"), ("Plugin.Sightings_policy", "2", 2),
    ("SimpleBackgroundJobs.supervisor_user", "anyone", "anyone"),
    ("Security.encryption_key", "k" * 32, "k" * 32),
    ("Session.timeout", "0", 0), ("MISP.full_tags_on_event_index", "2", "2"),
])
def test_misp_s_other_tests_accept_well_formed_values(name: str, raw: Any,
                                                       expected: Any) -> None:
    assert validate(definition(name), raw) == (expected, None)


@pytest.mark.parametrize(("name", "raw", "message"), [
    ("MISP.language", "klingon", "Invalid language."),
    ("MISP.correlation_engine", "default",
     "Please select a valid option from the list of available engines: Default, NoAcl"),
    ("MISP.host_org_id", 0, "No organisation selected"),
    ("MISP.host_org_id", -2, "Invalid organisation"),
    ("Plugin.Sightings_anonymise_as", "x", "Invalid organisation"),
    ("MISP.default_event_tag_collection", -1, "Invalid tag_collection."),
    ("MISP.python_bin", "phar://evil", "Phar protocol not allowed."),
    ("MISP.python_bin", "python3", "Binary file not executable."),
    ("MISP.ca_path", "relative.pem", "Invalid file path or file not accessible."),
    ("MISP.ca_path", "/etc/ssl/ca.crt", "File has to be in .pem format."),
    ("MISP.attachments_dir", "phar://x", "Phar protocol not allowed."),
    ("MISP.attachments_dir", "files", "Not a valid directory."),
    ("GnuPG.binary", "gpg", "Could not find the GnuPG executable at the defined location."),
    ("MISP.footer_logo", "../../etc/passwd", "Invalid filename."),
    ("MISP.custom_css", "css/evil.css", "Invalid filename."),
    ("MISP.terms_file", "terms/terms.pdf", "Invalid filename."),
    ("MISP.newUserText", "Welcome aboard",
     'The text served to the users must include the following replacement strings: '
     '"$username", "$password", "$misp"'),
    ("Session.defaults", "redis",
     "Please choose a valid session handler. Recommended values: php or database. Alternate "
     "options are cake (cakephp file based sessions) and cache."),
    ("Session.timeout", "soon", NOT_A_NUMBER),
    ("site_admin_debug", "maybe", "This setting has to be either true or false."),
    ("Plugin.RPZ_policy", 7, "Invalid setting, valid range is 0-5 (0 = DROP, 1 = NXDOMAIN, "
     "2 = NODATA, 3 = walled garden, 4 = PASSTHRU, 5 = TCP-only."),
    ("Plugin.RPZ_refresh", "-5", "Negative seconds found. The following formats are accepted: "
     "seconds (positive integer), or duration (positive integer) followed by a letter denoting "
     "scale (such as m, h, d, w for minutes, hours, days, weeks)"),
    ("Plugin.RPZ_refresh", "2y", "Negative seconds found. The following formats are accepted: "
     "seconds (positive integer), or duration (positive integer) followed by a letter denoting "
     "scale (such as m, h, d, w for minutes, hours, days, weeks)"),
    ("Plugin.RPZ_serial", "tomorrow", "Invalid format."),
    ("Security.encryption_key", "short", "Encryption key must be at least 32 chars long."),
    ("Plugin.Sightings_policy", "9", "Invalid option, the value has to be one of: 0, 1, 2, 3."),
    ("Plugin.ZeroMQ_port", "many", NOT_A_NUMBER),
    ("Plugin.Kafka_brokers", "  ", NOT_SET),
])
def test_misp_s_other_tests_refuse_with_misp_s_message(name: str, raw: Any,
                                                        message: str) -> None:
    assert validate(definition(name), raw)[1] == message


def test_a_local_organisation_setting_is_checked_against_the_local_organisations() -> None:
    host = definition("MISP.host_org_id")
    assert validate(host, 3, local_orgs={1, 3}) == (3, None)
    assert validate(host, 4, local_orgs={1, 3}) == (4, "Invalid organisation")
    assert validate(host, 4) == (4, None)  # the organisations unknown: the form only
    anonymise = definition("Plugin.Sightings_anonymise_as")
    assert validate(anonymise, 0, local_orgs=set()) == (0, None)
    assert validate(anonymise, 2, local_orgs=set()) == (2, "Invalid organisation")


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
