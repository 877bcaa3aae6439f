"""The settings catalogue: complete, self-consistent, and validating like MISP."""

from typing import Any

import pytest

from misp_contracts.settings_catalogue import (
    DEFAULT_PASSWORD_COMPLEXITY,
    MISP_TEST_NAMES,
    NOT_A_BOOLEAN,
    NOT_A_NUMBER,
    NOT_SET,
    SETTINGS,
    TABS,
    SettingDefinition,
    by_tab,
    compile_php_regex,
    defaults,
    definition,
    diagnose,
    validate,
)

# Every setting named in misp-admin-api.md §2.6, plus those the administration book names.
REFERENCE_SETTINGS = [
    "MISP.baseurl", "MISP.external_baseurl", "MISP.live", "MISP.language", "MISP.org",
    "MISP.host_org_id", "MISP.uuid", "MISP.email", "MISP.contact", "MISP.disable_emailing",
    "MISP.background_jobs", "MISP.default_event_distribution",
    "MISP.default_attribute_distribution", "MISP.default_event_threat_level",
    "MISP.default_publish_alert", "MISP.extended_alert_subject", "MISP.email_subject_TLP_string",
    "MISP.email_subject_tag", "MISP.email_subject_include_tag_name",
    "MISP.threatlevel_in_email_subject", "MISP.log_auth", "MISP.log_client_ip",
    "MISP.log_client_ip_header", "MISP.log_new_audit", "MISP.log_new_audit_compress",
    "MISP.log_user_ips", "MISP.log_paranoid", "MISP.max_correlations_per_event", "MISP.delegation",
    "MISP.enableEventBlocklisting", "MISP.enableOrgBlocklisting", "MISP.disable_user_add",
    "MISP.disableUserSelfManagement", "MISP.disable_user_login_change",
    "MISP.disable_user_password_change", "MISP.manage_workers", "MISP.system_setting_db",
    "Security.salt", "Security.advanced_authkeys", "Security.advanced_authkeys_validity",
    "Security.authkey_keep_session", "Security.password_policy_length",
    "Security.password_policy_complexity", "Security.require_password_confirmation",
    "Security.allow_self_registration", "Security.allow_password_forgotten",
    "Security.log_each_individual_auth_fail", "Security.do_not_log_authkeys",
    "Security.mandate_ip_allowlist_advanced_authkeys", "Security.limit_site_admins_to_host_org",
    "Security.hide_organisation_index_from_users",
    "Security.allow_unsafe_cleartext_apikey_logging", "SecureAuth.amount", "SecureAuth.expire",
    "GnuPG.binary", "GnuPG.onlyencrypted", "GnuPG.bodyonlyencrypted", "GnuPG.sign", "GnuPG.email",
    "GnuPG.homedir", "GnuPG.password", "GnuPG.obscure_subject", "GnuPG.key_fetching_disabled",
    "Proxy.host", "Proxy.port", "Proxy.method", "Proxy.user", "Proxy.password",
    "SimpleBackgroundJobs.enabled", "SimpleBackgroundJobs.redis_host",
    "SimpleBackgroundJobs.redis_port", "SimpleBackgroundJobs.redis_database",
    "SimpleBackgroundJobs.redis_password", "SimpleBackgroundJobs.redis_namespace",
    "SimpleBackgroundJobs.max_job_history_ttl", "SimpleBackgroundJobs.supervisor_host",
    "SimpleBackgroundJobs.supervisor_port", "SimpleBackgroundJobs.supervisor_user",
    "SimpleBackgroundJobs.supervisor_password", "SimpleBackgroundJobs.redis_serializer",
    "SimpleBackgroundJobs.heartbeat_timeout_seconds", "SimpleBackgroundJobs.default_max_attempts",
    "debug",
]

SECRETS = {"Security.salt", "GnuPG.password", "Proxy.password",
           "SimpleBackgroundJobs.redis_password", "SimpleBackgroundJobs.supervisor_password"}


def test_every_reference_setting_is_in_the_catalogue() -> None:
    missing = [name for name in REFERENCE_SETTINGS if name not in defaults()]

    assert missing == []


def test_setting_names_are_unique() -> None:
    names = [s.name for s in SETTINGS]

    assert len(names) == len(set(names))


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_default_passes_its_own_validation(setting: SettingDefinition) -> None:
    value, error = validate(setting, setting.default)

    assert error is None
    assert value == setting.default


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_well_formed(setting: SettingDefinition) -> None:
    assert setting.description.strip()
    assert setting.misp_test in MISP_TEST_NAMES.values()
    if setting.options is not None and setting.default not in (None, ""):
        assert str(setting.default) in setting.options
    if setting.redacted:
        assert setting.type == "string" and setting.default in ("", None)


def test_secrets_are_redacted_and_nothing_else_is() -> None:
    assert {s.name for s in SETTINGS if s.redacted} == SECRETS


def test_the_salt_cannot_be_set_through_the_api() -> None:
    salt = definition("Security.salt")

    assert salt.redacted and salt.cli_only


def test_tabs() -> None:
    grouped = by_tab()

    assert list(grouped) == list(TABS)
    assert sum(len(v) for v in grouped.values()) == len(SETTINGS)
    assert [s.name for s in grouped["Misc"]] == ["debug"]
    assert {s.name.split(".")[0] for s in grouped["Encryption"]} == {"GnuPG"}
    assert {s.name.split(".")[0] for s in grouped["Security"]} == {"Security", "SecureAuth"}
    for settings in grouped.values():
        assert [s.level for s in settings] == sorted(s.level for s in settings)


@pytest.mark.parametrize(("name", "expected"), [
    ("MISP.org", "ORGNAME"), ("MISP.host_org_id", 1), ("Security.password_policy_length", 12),
    ("Security.password_policy_complexity", DEFAULT_PASSWORD_COMPLEXITY),
    ("SecureAuth.amount", 5), ("SecureAuth.expire", 300), ("debug", 0),
    ("MISP.default_event_distribution", "1"), ("MISP.default_attribute_distribution", "event"),
    ("MISP.extended_alert_subject", False), ("MISP.log_auth", False),
    ("MISP.log_client_ip", False), ("MISP.default_publish_alert", True),
    ("Security.advanced_authkeys", True), ("GnuPG.binary", "/usr/bin/gpg"),
])
def test_defaults(name: str, expected: Any) -> None:
    assert defaults()[name] == expected


def test_distribution_options_are_the_four_sharing_levels() -> None:
    events = definition("MISP.default_event_distribution").options
    attributes = definition("MISP.default_attribute_distribution").options

    assert events == {"0": "Your organisation only", "1": "This community only",
                      "2": "Connected communities", "3": "All communities"}
    assert attributes == {**events, "event": "Inherit event"}


def test_an_unknown_setting_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        definition("MISP.no_such_setting")


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
