"""MISP's settings catalogue through the gateway with PyMISP (issue 17 item 3): a sample of MISP's
own setting names, from every tab, read with `get_server_setting` (MISP's shape, with the
catalogue's default, type, level and test), written with `set_server_setting(..., force=True)`
and read back, refused with MISP's message for a value of the wrong form, and put back to its
default at the end whatever happens.

The sample holds settings that no service of this product decides by (most drive features that
live outside it: `used_here` is false), so that the writes disturb nothing running beside the
test; none is deprecated or warned about at its default, so that putting it back leaves the
settings report as it was. The calls run a few at a time: each write waits until every service
has applied it."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from pymisp import PyMISP

from misp_contracts.settings_catalogue import DEPRECATED, TABS, SettingDefinition, definition

from .support import GATEWAY, admin_key

# Names from MISP's Server::generateServerSettings (MISP 2.5), every tab.
SAMPLE = (
    # MISP
    "MISP.language", "MISP.default_attribute_memory_coefficient", "MISP.curl_request_timeout",
    "MISP.disable_sighting_loading", "MISP.correlation_engine", "MISP.correlation_limit",
    "MISP.correlation_chunk_size", "MISP.enable_advanced_correlations",
    "MISP.ssdeep_correlation_threshold", "MISP.maintenance_message", "MISP.disable_threat_level",
    "MISP.footermidleft", "MISP.footer_logo", "MISP.showorg", "MISP.email_from_name",
    "MISP.osuser", "MISP.cveurl", "MISP.cweurl", "MISP.disablerestalert",
    "MISP.default_event_tag_collection", "MISP.tagging", "MISP.full_tags_on_event_index",
    "MISP.welcome_text_top", "MISP.welcome_logo", "MISP.title_text", "MISP.terms_download",
    "MISP.terms_file", "MISP.newUserText", "MISP.enableSightingBlocklisting",
    "MISP.showCorrelationsOnIndex", "MISP.block_event_alert_tag",
    "MISP.event_alert_republish_ban_threshold", "MISP.org_alert_threshold", "MISP.custom_css",
    "MISP.redis_host", "MISP.redis_port", "MISP.redis_serializer", "MISP.event_view_filter_fields",
    "MISP.updateTimeThreshold", "MISP.attachment_scan_timeout",
    # Encryption
    "SMIME.enabled", "SMIME.email", "SMIME.cert_public_sign", "SMIME.key_sign",
    # Proxy
    "Proxy.port", "Proxy.method", "Proxy.user",
    # Security
    "Security.api_key_quick_lookup", "Security.api_key_quick_lookup_expiration",
    "Security.auth_enforced", "Security.rest_client_baseurl", "Security.syslog_ident",
    "Security.sanitise_attribute_on_delete", "Security.hide_organisations_in_sharing_groups",
    "Security.sync_audit", "Security.enable_svg_logos", "Security.cors_origins",
    "Session.autoRegenerate", "Session.checkAgent", "Session.defaults", "Session.cookieTimeout",
    "LinOTPAuth.enabled", "LinOTPAuth.baseUrl", "LinOTPAuth.realm", "LinOTPAuth.verifyssl",
    "LinOTPAuth.mixedauth",
    # Plugin
    "Plugin.RPZ_policy", "Plugin.RPZ_walled_garden", "Plugin.RPZ_serial", "Plugin.RPZ_refresh",
    "Plugin.RPZ_ttl", "Plugin.RPZ_ns", "Plugin.Kafka_enable", "Plugin.Kafka_brokers",
    "Plugin.Kafka_event_notifications_topic", "Plugin.ZeroMQ_enable", "Plugin.ZeroMQ_host",
    "Plugin.ZeroMQ_port", "Plugin.ZeroMQ_redis_port", "Plugin.ZeroMQ_redis_database",
    "Plugin.ElasticSearch_logging_enable", "Plugin.ElasticSearch_connection_string",
    "Plugin.S3_enable", "Plugin.S3_bucket_name", "Plugin.Sightings_policy",
    "Plugin.Sightings_anonymise_as", "Plugin.Sightings_range", "Plugin.CustomAuth_enable",
    "Plugin.CustomAuth_header", "Plugin.CustomAuth_name", "Plugin.Enrichment_services_enable",
    "Plugin.Enrichment_timeout", "Plugin.Enrichment_services_port", "Plugin.Import_services_url",
    "Plugin.Export_timeout", "Plugin.Action_services_port", "Plugin.Workflow_enable",
    "Plugin.Workflow_debug_url", "Plugin.Cortex_services_url", "Plugin.Cortex_services_port",
    "Plugin.Cortex_timeout", "Plugin.CyCat_url", "Plugin.CTIInfoExtractor_enable",
    # SimpleBackgroundJobs
    "SimpleBackgroundJobs.redis_host", "SimpleBackgroundJobs.redis_port",
    "SimpleBackgroundJobs.redis_database", "SimpleBackgroundJobs.redis_namespace",
    "SimpleBackgroundJobs.redis_serializer", "SimpleBackgroundJobs.supervisor_host",
    "SimpleBackgroundJobs.supervisor_port", "SimpleBackgroundJobs.supervisor_user",
    # Misc
    "site_admin_debug",
)

RUN = f"e2e-{secrets.token_hex(4)}"  # in every text written, so that no value of a past run counts
WORKERS = 16
HOST_ORG = 1  # local: the organisation identity creates at its first run

NOT_A_NUMBER = "This setting has to be a number."
# MISP's test -> (a value of the wrong form, MISP's answer to it). Booleans have none: MISP casts
# whatever it gets to one.
INVALID: dict[str, tuple[Any, str]] = {
    "testForNumeric": ("many", NOT_A_NUMBER),
    "testForCookieTimeout": ("many", NOT_A_NUMBER),
    "testForZMQPortNumber": ("many", NOT_A_NUMBER),
    "testForPortNumber": (70000, "Make sure that you pick a valid port number."),
    "testForPositiveInteger": (-1, "The value has to be a whole number greater or equal 0."),
    "testForRPZBehaviour": (9, "Invalid setting, valid range is 0-5 (0 = DROP, 1 = NXDOMAIN, "
                               "2 = NODATA, 3 = walled garden, 4 = PASSTHRU, 5 = TCP-only."),
    "testForRPZDuration": ("-5", "Negative seconds found. The following formats are accepted: "
                                 "seconds (positive integer), or duration (positive integer) "
                                 "followed by a letter denoting scale (such as m, h, d, w for "
                                 "minutes, hours, days, weeks)"),
    "testForRPZSerial": ("tomorrow", "Invalid format."),
    "testForCustomImage": ("../../etc/passwd", "Invalid filename."),
    "testForTermsFile": ("../terms.pdf", "Invalid filename."),
    "testForStyleFile": ("css/theme.css", "Invalid filename."),
    "testPasswordResetText": ("Welcome aboard", "The text served to the users must include the "
                                                'following replacement strings: "$username", '
                                                '"$password", "$misp"'),
    "testURL": ("ftp.example.test", "Invalid baseurl, please make sure that the protocol is set."),
    "testForSessionDefaults": ("redis", "Please choose a valid session handler. Recommended "
                                        "values: php or database. Alternate options are cake "
                                        "(cakephp file based sessions) and cache."),
    "testLanguage": ("klingon", "Invalid language."),
    "testLocalOrg": (999_999_999, "Invalid organisation"),
    "testTagCollections": (-1, "Invalid tag_collection."),
    "testForCorrelationEngine": ("default", "Please select a valid option from the list of "
                                            "available engines: Default, NoAcl"),
}
# Well-formed values, by MISP's test (the others: see valid_value).
VALID: dict[str, Any] = {
    "testForCookieTimeout": 20160, "testForZMQPortNumber": 50001, "testForPortNumber": 8443,
    "testLocalOrg": HOST_ORG, "testTagCollections": 3, "testForRPZDuration": "45m",
    "testForRPZSerial": "$date01", "testForCustomImage": f"{RUN}.png",
    "testForTermsFile": f"terms-{RUN}.pdf", "testForStyleFile": f"{RUN}.css",
    "testPasswordResetText": f"Hello $username ({RUN}): $password, at $misp",
    "testURL": f"https://{RUN}.example.test",
}


def valid_value(setting: SettingDefinition) -> Any:
    """A value of the setting's type that its test accepts and that differs from the default."""
    if setting.type == "boolean":
        return not setting.default
    if setting.options:
        key = next(k for k in setting.options if k not in ("", str(setting.default)))
        return int(key) if setting.type == "numeric" else key
    if setting.misp_test in VALID:
        return VALID[setting.misp_test]
    if setting.type == "numeric":
        return int(setting.default or 0) + 7
    return f"{RUN} {setting.name}"


def invalid_value(setting: SettingDefinition) -> tuple[Any, str] | None:
    """A value MISP refuses (without force), and its words; None where MISP refuses none."""
    if setting.misp_test in INVALID:
        return INVALID[setting.misp_test]
    if setting.misp_test == "testForEmpty" and setting.type == "string" \
            and not setting.null_allowed:
        return "   ", "Value not set."  # trimmed, then empty
    return None


class Clients:
    """One PyMISP per worker thread (each has its own HTTP session)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._key = admin_key()

    def get(self) -> PyMISP:
        client = getattr(self._local, "misp", None)
        if client is None:
            client = self._local.misp = PyMISP(GATEWAY, self._key, ssl=False, timeout=30)
        return client


def in_parallel(work: Callable[[str], list[str]], names: Iterable[str]) -> list[str]:
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return [problem for problems in pool.map(work, names) for problem in problems]


def test_the_sample_is_misp_s_names_from_every_tab() -> None:
    settings = [definition(name) for name in SAMPLE]

    assert len(set(SAMPLE)) == len(SAMPLE) >= 100
    assert {s.tab for s in settings} == set(TABS)
    assert not [s.name for s in settings if s.redacted or s.cli_only or s.level == DEPRECATED]
    assert sum(not s.used_here for s in settings) >= 100
    assert sum(invalid_value(s) is not None for s in settings) >= 40


@pytest.fixture(scope="module")
def clients() -> Clients:
    return Clients()


def test_pymisp_reads_writes_and_is_refused_as_by_misp(clients: Clients) -> None:
    def check(name: str) -> list[str]:
        misp, setting = clients.get(), definition(name)
        problems = []
        answer = misp.get_server_setting(name)
        expected = {"name": name, "value": setting.default, "type": setting.type,
                    "level": setting.level, "test": setting.misp_test,
                    "description": setting.description, "used_here": setting.used_here}
        if {k: answer.get(k) for k in expected} != expected:
            problems.append(f"{name}: getSetting answered {answer}")
        if setting.options is not None and answer.get("options") != setting.options:
            problems.append(f"{name}: options {answer.get('options')}")
        if setting.null_allowed and answer.get("null") is not True:
            problems.append(f"{name}: no null flag")

        value = valid_value(setting)
        saved = misp.set_server_setting(name, value, force=True)
        if saved != {"saved": True, "success": True, "name": "Field updated",
                     "message": "Field updated", "url": "/servers/serverSettingsEdit"}:
            problems.append(f"{name}: {value!r} answered {saved}")
        if (read := misp.get_server_setting(name).get("value")) != value:
            problems.append(f"{name}: wrote {value!r}, read {read!r}")

        if (invalid := invalid_value(setting)) is not None:
            bad, message = invalid
            refused = misp.set_server_setting(name, bad)
            status, body = refused.get("errors", (None, {}))
            if (status, body.get("saved"), body.get("message")) != (403, False, message):
                problems.append(f"{name}: {bad!r} answered {refused}")
            if (kept := misp.get_server_setting(name).get("value")) != value:
                problems.append(f"{name}: the refused {bad!r} left {kept!r}")
        return problems

    def put_back(name: str) -> list[str]:
        misp, default = clients.get(), definition(name).default
        # PyMISP leaves a None value out of the body: an empty one unsets a nullable setting
        answer = misp.set_server_setting(name, "" if default is None else default, force=True)
        if answer.get("message") != "Field updated":
            return [f"{name}: putting back {default!r} answered {answer}"]
        if (read := misp.get_server_setting(name).get("value")) != default:
            return [f"{name}: put back, yet reads {read!r}"]
        return []

    try:
        problems = in_parallel(check, SAMPLE)
    finally:
        restored = in_parallel(put_back, SAMPLE)
    assert problems == []
    assert restored == []


def test_secret_and_command_line_settings_answer_as_misp_does(clients: Clients) -> None:
    misp = clients.get()
    for name in ("MISP.redis_password", "Plugin.ZeroMQ_password", "SMIME.password"):
        status, body = misp.get_server_setting(name)["errors"]
        assert (status, body["message"]) == (403, "This setting is redacted.")
    for name in ("MISP.python_bin", "MISP.attachments_dir", "Security.encryption_key"):
        status, body = misp.set_server_setting(name, "/tmp", force=True)["errors"]
        assert (status, body["message"]) == (405, "This setting can only be edited via the CLI.")
    status, body = misp.get_server_setting(f"Plugin.{RUN}")["errors"]
    assert (status, body["message"]) == (404, f"Setting Plugin.{RUN} is invalid.")
