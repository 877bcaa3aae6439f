"""The settings catalogue: complete and self-consistent (its validation is the settings
service's, tested there)."""

import json
import re
from collections import Counter
from importlib.resources import files
from typing import Any, get_args

import pytest

from misp_contracts.settings_catalogue import (
    CATALOGUE_FILE,
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

# MISP 2.5's generateServerSettings defines 378 settings; this product adds its own four.
MISP_SETTING_COUNT = 378
OURS = {"GnuPG.keyServer", "Security.password_reset_link_ttl",
        "SimpleBackgroundJobs.heartbeat_timeout_seconds",
        "SimpleBackgroundJobs.default_max_attempts"}
# How many of MISP's settings each of its branches holds.
MISP_BRANCHES = {"MISP": 158, "GnuPG": 9, "SMIME": 5, "Proxy": 5, "Security": 53,
                 "SecureAuth": 2, "Session": 5, "Plugin": 122, "SimpleBackgroundJobs": 12,
                 "LinOTPAuth": 5, "debug": 1, "site_admin_debug": 1}
# The tab of each branch, as MISP merges them.
BRANCH_TAB = {"MISP": "MISP", "GnuPG": "Encryption", "SMIME": "Encryption", "Proxy": "Proxy",
              "Security": "Security", "SecureAuth": "Security", "Session": "Security",
              "LinOTPAuth": "Security", "Plugin": "Plugin",
              "SimpleBackgroundJobs": "SimpleBackgroundJobs", "debug": "Misc",
              "site_admin_debug": "Misc"}

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

# MISP's redacted settings (MISP shows none of them; this product never publishes them in clear).
SECRETS = {"Security.salt", "GnuPG.password", "Proxy.password",
           "SimpleBackgroundJobs.redis_password", "SimpleBackgroundJobs.supervisor_password",
           "MISP.redis_password", "SMIME.password", "Security.encryption_key",
           "Plugin.ZeroMQ_password", "Plugin.ZeroMQ_redis_password"}


def test_every_reference_setting_is_in_the_catalogue() -> None:
    missing = [name for name in REFERENCE_SETTINGS if name not in defaults()]

    assert missing == []


def test_setting_names_are_unique() -> None:
    names = [s.name for s in SETTINGS]

    assert len(names) == len(set(names))


def test_every_test_a_setting_can_name_has_misp_s_name() -> None:
    assert set(MISP_TEST_NAMES) == set(get_args(Validation))


def test_the_catalogue_holds_every_setting_of_misp_and_ours() -> None:
    branches = Counter(s.name.split(".")[0] for s in SETTINGS if s.name not in OURS)

    assert len(SETTINGS) == MISP_SETTING_COUNT + len(OURS)
    assert set(defaults()) >= OURS
    assert dict(branches) == MISP_BRANCHES


def test_the_catalogue_is_package_data_loaded_once() -> None:
    raw = json.loads(files("misp_contracts").joinpath(CATALOGUE_FILE).read_text())

    assert [row["name"] for row in raw] == [s.name for s in SETTINGS]
    assert definition("MISP.baseurl") is definition("MISP.baseurl")


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_well_formed(setting: SettingDefinition) -> None:
    assert setting.description.strip()
    # our own words, short: one or two sentences
    assert len(setting.description) <= 320
    assert len(re.findall(r"[.!?](\s|$)", setting.description.replace("e.g.", "eg"))) <= 2
    assert setting.misp_test in MISP_TEST_NAMES.values()
    assert setting.tab == BRANCH_TAB[setting.name.split(".")[0]]
    if setting.options is not None and setting.default not in (None, ""):
        assert str(setting.default) in setting.options
    if setting.redacted:
        assert setting.type == "string" and setting.default in ("", None)
    if setting.type == "boolean":
        assert isinstance(setting.default, bool)
    elif setting.type == "numeric":
        assert setting.default is None or isinstance(setting.default, int | float)
        assert not isinstance(setting.default, bool)
    else:
        assert isinstance(setting.default, str)


def test_secrets_are_redacted_and_nothing_else_is() -> None:
    assert {s.name for s in SETTINGS if s.redacted} == SECRETS


def test_the_salt_cannot_be_set_through_the_api() -> None:
    salt = definition("Security.salt")

    assert salt.redacted and salt.cli_only


def test_tabs() -> None:
    grouped = by_tab()

    assert list(grouped) == list(TABS)
    assert sum(len(v) for v in grouped.values()) == len(SETTINGS)
    assert [s.name for s in grouped["Misc"]] == ["debug", "site_admin_debug"]
    assert {s.name.split(".")[0] for s in grouped["Encryption"]} == {"GnuPG", "SMIME"}
    assert {s.name.split(".")[0] for s in grouped["Security"]} == {
        "Security", "SecureAuth", "Session", "LinOTPAuth"}
    assert {s.name.split(".")[0] for s in grouped["Plugin"]} == {"Plugin"}
    for settings in grouped.values():
        assert [s.level for s in settings] == sorted(s.level for s in settings)


def test_settings_of_features_outside_this_product_are_marked_not_used_here() -> None:
    unused = {s.name for s in SETTINGS if not s.used_here}

    assert {s.name for s in SETTINGS if s.tab == "Plugin"} <= unused
    assert {s.name for s in SETTINGS if s.name.startswith(("SMIME.", "LinOTPAuth."))} <= unused
    assert {"MISP.correlation_engine", "MISP.default_event_distribution", "MISP.custom_css",
            "MISP.redis_host", "SimpleBackgroundJobs.redis_host"} <= unused
    # this product's own features: accounts, authentication, logs, mail, jobs
    assert not unused & {"MISP.baseurl", "MISP.org", "MISP.email", "MISP.disable_emailing",
                         "Security.password_policy_length", "Security.otp_required",
                         "SecureAuth.amount", "GnuPG.sign", "MISP.log_auth", "Session.timeout",
                         "SimpleBackgroundJobs.default_max_attempts"}


@pytest.mark.parametrize(("name", "expected"), [
    ("MISP.org", "ORGNAME"), ("MISP.host_org_id", 1), ("Security.password_policy_length", 12),
    ("Security.password_policy_complexity", DEFAULT_PASSWORD_COMPLEXITY),
    ("SecureAuth.amount", 5), ("SecureAuth.expire", 300), ("debug", 0),
    ("MISP.default_event_distribution", "1"), ("MISP.default_attribute_distribution", "event"),
    ("MISP.extended_alert_subject", False), ("MISP.log_auth", False),
    ("MISP.log_client_ip", False), ("MISP.default_publish_alert", True),
    ("Security.advanced_authkeys", True), ("GnuPG.binary", "/usr/bin/gpg"),
    # MISP's defaults of settings this product only stores
    ("MISP.correlation_limit", 100), ("MISP.cveurl", "https://cve.circl.lu/cve/"),
    ("Plugin.ZeroMQ_port", 50000), ("Plugin.RPZ_serial", "$date00"), ("Plugin.RPZ_policy", 1),
    ("Plugin.Kafka_brokers", "kafka:9092"), ("Plugin.Sightings_range", 365),
    ("Plugin.Enrichment_services_port", 6666), ("Plugin.Import_services_port", 6666),
    ("Security.email_otp_length", 6), ("Security.syslog_to_stderr", True),
    ("Session.timeout", 60), ("Session.defaults", "php"), ("site_admin_debug", False),
    ("SimpleBackgroundJobs.enabled", False), ("MISP.redis_database", 13),
    ("LinOTPAuth.realm", "lino"), ("MISP.disable_cached_exports", True),
])
def test_defaults(name: str, expected: Any) -> None:
    assert defaults()[name] == expected


@pytest.mark.parametrize(("name", "type_", "level", "test"), [
    ("MISP.baseurl", "string", 0, "testBaseURL"), ("MISP.live", "boolean", 0, "testLive"),
    ("MISP.host_org_id", "numeric", 0, "testLocalOrgStrict"),
    ("MISP.language", "string", 0, "testLanguage"),
    ("MISP.max_correlations_per_event", "numeric", 1, "testForNumeric"),
    ("MISP.disable_sighting_loading", "boolean", 1, "testBoolFalse"),
    ("MISP.attachments_dir", "string", 2, "testForWritableDir"),
    ("MISP.newUserText", "string", 1, "testPasswordResetText"),
    ("MISP.name", "string", 3, "testForEmpty"), ("MISP.redis_serializer", "string", 2, None),
    ("Security.allow_unsafe_cleartext_apikey_logging", "boolean", 0, "testBoolFalse"),
    ("Security.encryption_key", "string", 2, None),
    ("Session.cookieTimeout", "numeric", 0, "testForCookieTimeout"),
    ("SecureAuth.amount", "numeric", 0, "testForNumeric"),
    ("Plugin.ZeroMQ_port", "numeric", 2, "testForZMQPortNumber"),
    ("Plugin.Sightings_anonymise_as", "numeric", 1, "testLocalOrg"),
    ("Plugin.RPZ_refresh", "string", 2, "testForRPZDuration"),
    ("GnuPG.binary", "string", 2, "testForGPGBinary"), ("debug", "numeric", 0, "testDebug"),
    ("site_admin_debug", "boolean", 0, "testDebugAdmin"),
    ("SimpleBackgroundJobs.supervisor_user", "string", 0, None),
])
def test_types_levels_and_tests_are_misp_s(name: str, type_: str, level: int,
                                           test: str | None) -> None:
    setting = definition(name)

    assert (setting.type, setting.level, setting.misp_test) == (type_, level, test)


def test_distribution_options_are_the_four_sharing_levels() -> None:
    events = definition("MISP.default_event_distribution").options
    attributes = definition("MISP.default_attribute_distribution").options

    assert events == {"0": "Your organisation only", "1": "This community only",
                      "2": "Connected communities", "3": "All communities"}
    assert attributes == {**events, "event": "Inherit from event"}


def test_an_unknown_setting_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        definition("MISP.no_such_setting")
