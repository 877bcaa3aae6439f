"""The settings catalogue: complete and self-consistent (its validation is the settings
service's, tested there)."""

from typing import Any, get_args

import pytest

from misp_contracts.settings_catalogue import (
    DEFAULT_PASSWORD_COMPLEXITY,
    MISP_TEST_NAMES,
    SETTINGS,
    TABS,
    SettingDefinition,
    Validation,
    by_tab,
    defaults,
    definition,
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


def test_every_test_a_setting_can_name_has_misp_s_name() -> None:
    assert set(MISP_TEST_NAMES) == set(get_args(Validation))


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
