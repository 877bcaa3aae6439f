"""The settings catalogue: every server setting's definition and default, as data.

Every service reads its defaults from here, so it knows them from its first start; the settings
service stores overrides, validates each change by the test a setting names (`validation`; the
functions are the settings service's) and publishes it (ARCHITECTURE §6). Names, types, levels and
tabs follow MISP's `Server::generateServerSettings`, so that `/servers/getSetting` and
`/servers/serverSettingsEdit` look the same to MISP clients.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

Tab = Literal["MISP", "Encryption", "Proxy", "Security", "Misc", "SimpleBackgroundJobs"]
SettingType = Literal["string", "numeric", "boolean"]
Validation = Literal[
    "test_for_empty", "test_bool", "test_numeric", "test_positive_int", "test_at_least_one",
    "test_port", "test_passwordlength", "test_regex", "test_options", "test_uuid", "test_url",
    "test_baseurl", "test_email", "test_path", "test_salt", "test_debug", "test_live",
    "test_disable_email",
]

TABS: tuple[str, ...] = ("MISP", "Encryption", "Proxy", "Security", "Misc", "SimpleBackgroundJobs")

# Levels, as MISP shows them: deprecated settings are hidden unless they are set.
CRITICAL, RECOMMENDED, OPTIONAL, DEPRECATED = 0, 1, 2, 3

# MISP's name of each test, for the `test` field of MISP's REST answers.
MISP_TEST_NAMES: dict[str, str] = {
    "test_for_empty": "testForEmpty", "test_bool": "testBool", "test_numeric": "testForNumeric",
    "test_positive_int": "testForPositiveInteger", "test_at_least_one": "testForPositiveInteger",
    "test_port": "testForPortNumber", "test_passwordlength": "testPasswordLength",
    "test_regex": "testPasswordRegex", "test_options": "testForEmpty", "test_uuid": "testUuid",
    "test_url": "testURL", "test_baseurl": "testBaseURL", "test_email": "testForEmpty",
    "test_path": "testForPath", "test_salt": "testSalt", "test_debug": "testDebug",
    "test_live": "testLive", "test_disable_email": "testDisableEmail",
}

# MISP's default password complexity: upper + lower + (digit or symbol), or at least 16 characters.
DEFAULT_PASSWORD_COMPLEXITY = r"/^((?=.*\d)|(?=.*\W+))(?![\n])(?=.*[A-Z])(?=.*[a-z]).*$|.{16,}/"

REDACTED_VALUE = "*****"


class SettingDefinition(BaseModel):
    """One server setting as MISP describes it (level, type, default, test, options...)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str  # dotted, e.g. "MISP.baseurl"; "debug" is the only top-level one
    tab: Tab
    type: SettingType
    default: JsonValue = None
    level: int = Field(ge=CRITICAL, le=DEPRECATED)
    description: str
    validation: Validation
    error_message: str = ""  # when set, replaces the test's own message on failure
    options: dict[str, str] | None = None  # value -> label
    redacted: bool = False  # never shown (`*****`), never published in clear
    cli_only: bool = False  # cannot be changed through the API (MISP answers 405)
    null_allowed: bool = False  # unset (null or empty) is a valid state

    @property
    def misp_test(self) -> str:
        """The name MISP gives this setting's test (`testForEmpty`, `testBool`, ...)."""
        return MISP_TEST_NAMES[self.validation]


# --- The catalogue --------------------------------------------------------------------------

_TAB_OF_PREFIX: dict[str, Tab] = {
    "MISP": "MISP", "GnuPG": "Encryption", "Proxy": "Proxy", "Security": "Security",
    "SecureAuth": "Security", "SimpleBackgroundJobs": "SimpleBackgroundJobs", "debug": "Misc",
}

_DISTRIBUTIONS = {"0": "Your organisation only", "1": "This community only",
                  "2": "Connected communities", "3": "All communities"}


def _setting(name: str, type_: SettingType, default: JsonValue, level: int, validation: Validation,
             description: str, *, options: dict[str, str] | None = None, redacted: bool = False,
             cli_only: bool = False, null_allowed: bool = False) -> SettingDefinition:
    return SettingDefinition(name=name, tab=_TAB_OF_PREFIX[name.split(".", 1)[0]], type=type_,
                             default=default, level=level, validation=validation,
                             description=description, options=options, redacted=redacted,
                             cli_only=cli_only, null_allowed=null_allowed)


def _flag(name: str, default: bool, level: int, description: str, *,
          validation: Validation = "test_bool", cli_only: bool = False) -> SettingDefinition:
    return _setting(name, "boolean", default, level, validation, description, cli_only=cli_only)


SETTINGS: tuple[SettingDefinition, ...] = (
    # --- MISP ---
    _setting("MISP.baseurl", "string", "", CRITICAL, "test_baseurl",
             "The URL this instance is reached at, protocol included and no trailing slash "
             "(https://misp.example.org or https://example.org/misp). Links in e-mails and "
             "exports are built from it."),
    _setting("MISP.external_baseurl", "string", "", CRITICAL, "test_baseurl",
             "The URL to use in links that leave the instance (e-mails) when it differs from "
             "MISP.baseurl; empty to use MISP.baseurl."),
    _flag("MISP.live", True, CRITICAL,
          "When disabled, only site admins can use the instance; everyone else is refused.",
          validation="test_live"),
    _setting("MISP.language", "string", "eng", CRITICAL, "test_for_empty",
             "The language of the user interface."),
    _setting("MISP.org", "string", "ORGNAME", RECOMMENDED, "test_for_empty",
             "The name of the organisation hosting this instance; the host organisation is "
             "created with this name at first run."),
    _setting("MISP.host_org_id", "numeric", 1, CRITICAL, "test_positive_int",
             "The id of the local organisation that hosts this instance. Its members can be "
             "given site admin rights when Security.limit_site_admins_to_host_org is on."),
    _setting("MISP.uuid", "string", "", CRITICAL, "test_uuid",
             "The UUID of this instance, which identifies it to its sync partners; generated at "
             "first start when unset.", null_allowed=True),
    _setting("MISP.email", "string", "email@example.com", CRITICAL, "test_email",
             "The sender address of every e-mail the instance sends."),
    _setting("MISP.contact", "string", "email@example.com", RECOMMENDED, "test_email",
             "The address users are told to write to when they need help (locked account, "
             "errors)."),
    _flag("MISP.disable_emailing", False, CRITICAL,
          "Block every outgoing e-mail (alerts, password resets, messages to users).",
          validation="test_disable_email"),
    _flag("MISP.background_jobs", True, RECOMMENDED,
          "Run slow work (mass e-mails, exports, pulls) as background jobs instead of inside "
          "the request."),
    _setting("MISP.default_event_distribution", "string", "1", CRITICAL, "test_options",
             "The distribution preselected for new events (0-3).", options=_DISTRIBUTIONS),
    _setting("MISP.default_attribute_distribution", "string", "event", CRITICAL, "test_options",
             "The distribution preselected for new attributes (0-3), or 'event' to inherit the "
             "distribution of their event.",
             options={**_DISTRIBUTIONS, "event": "Inherit event"}),
    _setting("MISP.default_event_threat_level", "string", "4", RECOMMENDED, "test_options",
             "The threat level preselected for new events.",
             options={"1": "High", "2": "Medium", "3": "Low", "4": "Undefined"}),
    _flag("MISP.default_publish_alert", True, CRITICAL,
          "Whether publishing an event sends alert e-mails by default."),
    _flag("MISP.extended_alert_subject", False, RECOMMENDED,
          "Put the event's info in the subject of alert e-mails. Subjects are never encrypted, "
          "so with GnuPG this leaks part of the event in clear text."),
    _setting("MISP.email_subject_TLP_string", "string", "tlp:amber", OPTIONAL, "test_for_empty",
             "The TLP marking put in alert e-mail subjects when the event has no tag of the "
             "MISP.email_subject_tag namespace."),
    _setting("MISP.email_subject_tag", "string", "tlp", OPTIONAL, "test_for_empty",
             "The tag namespace whose tag on the event, if any, goes in the alert e-mail "
             "subject instead of MISP.email_subject_TLP_string."),
    _flag("MISP.email_subject_include_tag_name", True, OPTIONAL,
          "Put the whole tag (tlp:amber) in the subject rather than only its value (amber)."),
    _flag("MISP.threatlevel_in_email_subject", True, OPTIONAL,
          "Put the event's threat level in the subject of alert e-mails."),
    _flag("MISP.log_auth", False, RECOMMENDED,
          "Log every successful API authentication with the URL requested (verbose)."),
    _flag("MISP.log_client_ip", False, RECOMMENDED,
          "Record the client's IP address in each log entry."),
    _setting("MISP.log_client_ip_header", "string", "REMOTE_ADDR", RECOMMENDED, "test_for_empty",
             "Where the client IP is read from when MISP.log_client_ip is on: REMOTE_ADDR for "
             "the peer address, or a header set by a trusted proxy (HTTP_X_FORWARDED_FOR)."),
    _flag("MISP.log_new_audit", False, RECOMMENDED,
          "Also keep the audit log of full changes (audit_logs), next to the classic log."),
    _flag("MISP.log_new_audit_compress", False, OPTIONAL,
          "Compress the change data of audit_logs entries."),
    _flag("MISP.log_user_ips", False, CRITICAL,
          "Remember which IP addresses each user authenticates from."),
    _flag("MISP.log_paranoid", False, CRITICAL,
          "Log every request, whatever it does (paranoid mode). Very verbose: for "
          "investigations only."),
    _setting("MISP.max_correlations_per_event", "numeric", 5000, RECOMMENDED,
             "test_positive_int",
             "Events with more correlations than this are not correlated further."),
    _flag("MISP.delegation", True, RECOMMENDED,
          "Allow delegation requests: asking another organisation to publish an event in its "
          "name."),
    _flag("MISP.enableEventBlocklisting", True, RECOMMENDED,
          "Refuse events whose UUID is on the event block list."),
    _flag("MISP.enableOrgBlocklisting", True, RECOMMENDED,
          "Refuse events created by organisations on the organisation block list."),
    _flag("MISP.disable_user_add", False, RECOMMENDED,
          "Forbid adding users through the UI and the API, for instances whose users are "
          "managed elsewhere."),
    _flag("MISP.disableUserSelfManagement", False, RECOMMENDED,
          "Users cannot edit their own profile (e-mail, keys, alert preferences); only "
          "administrators can."),
    _flag("MISP.disable_user_login_change", False, RECOMMENDED,
          "Only site admins can change a user's login (e-mail address)."),
    _flag("MISP.disable_user_password_change", False, RECOMMENDED,
          "Users cannot change their own password; only site admins can."),
    _flag("MISP.manage_workers", True, OPTIONAL,
          "Let site admins start, stop and restart background workers from the UI and API."),
    _flag("MISP.system_setting_db", False, RECOMMENDED,
          "Keep setting overrides in the database rather than in the configuration file "
          "(this platform always keeps them in the settings service's database).",
          cli_only=True),
    # --- Security ---
    _setting("Security.salt", "string", "", CRITICAL, "test_salt",
             "A random secret of at least 32 characters for salted hashes. Set in the "
             "environment of the services that use it; never shown and never published.",
             redacted=True, cli_only=True, null_allowed=True),
    _flag("Security.advanced_authkeys", True, CRITICAL,
          "Advanced authkeys: several keys per user, each with an expiry, a comment, allowed "
          "IPs and a read-only flag, stored only as a hash."),
    _setting("Security.advanced_authkeys_validity", "numeric", None, OPTIONAL,
             "test_positive_int",
             "The longest validity a new authkey may have, in days; empty for no limit.",
             null_allowed=True),
    _flag("Security.authkey_keep_session", False, OPTIONAL,
          "Keep a session after a request authenticated by an authkey, instead of a new "
          "authentication per request."),
    _setting("Security.password_policy_length", "numeric", 12, OPTIONAL, "test_passwordlength",
             "The minimal length of a password; 0 for the default (12)."),
    _setting("Security.password_policy_complexity", "string", DEFAULT_PASSWORD_COMPLEXITY,
             OPTIONAL, "test_regex",
             "A delimited regular expression every new password has to match. The default "
             "asks for an upper-case and a lower-case letter and a digit or symbol, or at "
             "least 16 characters."),
    _flag("Security.require_password_confirmation", False, RECOMMENDED,
          "Ask for the current password before a user changes their password or profile in "
          "the UI (not for API calls that carry an authkey)."),
    _flag("Security.allow_self_registration", False, RECOMMENDED,
          "Let visitors request an account through a registration form; a site admin "
          "accepts or discards each request."),
    _flag("Security.allow_password_forgotten", False, RECOMMENDED,
          "Let users reset a forgotten password through a link sent by e-mail."),
    _setting("Security.password_reset_link_ttl", "numeric", 60, RECOMMENDED, "test_positive_int",
             "How long, in minutes, a password reset link sent by e-mail (users/forgot) stays "
             "valid; asking again replaces the previous link."),
    _flag("Security.log_each_individual_auth_fail", False, RECOMMENDED,
          "Log every failed API authentication; by default repeated failures of the same key "
          "within an hour are logged once."),
    _flag("Security.do_not_log_authkeys", False, CRITICAL,
          "Replace authkeys by asterisks in log entries."),
    _flag("Security.allow_unsafe_cleartext_apikey_logging", False, OPTIONAL,
          "Log the whole key of failed API authentications instead of a masked one. Unsafe: "
          "for debugging only."),
    _flag("Security.mandate_ip_allowlist_advanced_authkeys", False, OPTIONAL,
          "Refuse to create or keep an authkey without a list of allowed IP addresses."),
    _flag("Security.limit_site_admins_to_host_org", False, RECOMMENDED,
          "Only members of the host organisation (MISP.host_org_id) can be site admins."),
    _flag("Security.hide_organisation_index_from_users", False, RECOMMENDED,
          "Hide the organisation index and other organisations' details from users who are "
          "not site admins, except for organisations of events they can see."),
    _flag("Security.otp_required", False, OPTIONAL,
          "Require a one-time password (TOTP) at every password login. Users without a "
          "token must enrol one at their next login; roles with perm_skip_otp are exempt."),
    _setting("Security.otp_issuer", "string", "", OPTIONAL, "test_for_empty",
             "The issuer shown in authenticator apps for this instance's TOTP tokens; empty "
             "for \"<MISP.org> MISP\".", null_allowed=True),
    _setting("SecureAuth.amount", "numeric", 5, CRITICAL, "test_positive_int",
             "How many failed logins for one account from one IP address are allowed within "
             "SecureAuth.expire seconds before further attempts are blocked."),
    _setting("SecureAuth.expire", "numeric", 300, CRITICAL, "test_positive_int",
             "How long, in seconds, failed logins are remembered and the block lasts."),
    # --- Encryption (GnuPG) ---
    _setting("GnuPG.email", "string", "", CRITICAL, "test_email",
             "The e-mail address of the instance's GnuPG key, which signs outgoing e-mail.",
             null_allowed=True),
    _setting("GnuPG.homedir", "string", "", CRITICAL, "test_path",
             "The GnuPG home directory that holds the instance's key.", null_allowed=True),
    _setting("GnuPG.password", "string", "", RECOMMENDED, "test_for_empty",
             "The passphrase of the instance's GnuPG key. Set in the mailer's environment; "
             "never shown and never published.", redacted=True, null_allowed=True),
    _flag("GnuPG.onlyencrypted", False, CRITICAL,
          "Send e-mail only to users who have a GnuPG key; users without one get none."),
    _flag("GnuPG.bodyonlyencrypted", False, OPTIONAL,
          "Keep event details out of e-mails sent unencrypted (to users without a key): "
          "their body only says where to find the event."),
    _flag("GnuPG.sign", True, OPTIONAL,
          "Sign outgoing e-mail with the instance's key."),
    _flag("GnuPG.obscure_subject", False, OPTIONAL,
          "Replace the subject of encrypted e-mails with a generic one, since subjects are "
          "never encrypted."),
    _flag("GnuPG.key_fetching_disabled", False, OPTIONAL,
          "Never fetch users' public keys from key servers."),
    _setting("GnuPG.keyServer", "string", "https://openpgp.circl.lu", OPTIONAL, "test_url",
             "The key server (HKP) that \"Fetch GnuPG key\" searches for users' public keys."),
    _setting("GnuPG.binary", "string", "/usr/bin/gpg", OPTIONAL, "test_path",
             "The path of the gpg executable."),
    # --- Proxy ---
    _setting("Proxy.host", "string", "", OPTIONAL, "test_for_empty",
             "The host of the HTTP proxy for outgoing connections; empty for none.",
             null_allowed=True),
    _setting("Proxy.port", "numeric", None, OPTIONAL, "test_port",
             "The port of the HTTP proxy.", null_allowed=True),
    _setting("Proxy.method", "string", "", OPTIONAL, "test_options",
             "How to authenticate to the proxy: Basic or Digest; empty for no authentication.",
             options={"Basic": "Basic", "Digest": "Digest"}, null_allowed=True),
    _setting("Proxy.user", "string", "", OPTIONAL, "test_for_empty",
             "The user name for the proxy.", null_allowed=True),
    _setting("Proxy.password", "string", "", OPTIONAL, "test_for_empty",
             "The password for the proxy; never shown and never published.",
             redacted=True, null_allowed=True),
    # --- Misc ---
    _setting("debug", "numeric", 0, CRITICAL, "test_debug",
             "The debug level: 0 on production systems; 1 shows errors and notices; 2 adds "
             "the database queries.",
             options={"0": "Debug off", "1": "Debug on", "2": "Debug on + SQL dump"}),
    # --- SimpleBackgroundJobs ---
    _flag("SimpleBackgroundJobs.enabled", True, CRITICAL,
          "Run background jobs through the jobs service's queues and workers."),
    _setting("SimpleBackgroundJobs.redis_host", "string", "127.0.0.1", CRITICAL,
             "test_for_empty",
             "The Redis host of MISP's job queues; accepted for compatibility, this platform "
             "keeps its queues in the jobs service's database."),
    _setting("SimpleBackgroundJobs.redis_port", "numeric", 6379, CRITICAL, "test_port",
             "The Redis port of MISP's job queues (kept for compatibility)."),
    _setting("SimpleBackgroundJobs.redis_database", "numeric", 1, CRITICAL, "test_positive_int",
             "The Redis database of MISP's job queues (kept for compatibility)."),
    _setting("SimpleBackgroundJobs.redis_password", "string", "", CRITICAL, "test_for_empty",
             "The Redis password of MISP's job queues (kept for compatibility); never shown.",
             redacted=True, null_allowed=True),
    _setting("SimpleBackgroundJobs.redis_namespace", "string", "background_jobs", CRITICAL,
             "test_for_empty",
             "The Redis key prefix of MISP's job queues (kept for compatibility)."),
    _setting("SimpleBackgroundJobs.redis_serializer", "string", "JSON", OPTIONAL,
             "test_options",
             "How MISP serializes job data in Redis (kept for compatibility).",
             options={"JSON": "JSON", "igbinary": "igbinary"}),
    _setting("SimpleBackgroundJobs.max_job_history_ttl", "numeric", 86400, CRITICAL,
             "test_positive_int",
             "How long, in seconds, finished jobs stay listed before they are purged."),
    _setting("SimpleBackgroundJobs.supervisor_host", "string", "localhost", CRITICAL,
             "test_for_empty", "The host of the Supervisor XML-RPC API that manages workers."),
    _setting("SimpleBackgroundJobs.supervisor_port", "numeric", 9001, CRITICAL, "test_port",
             "The port of the Supervisor XML-RPC API."),
    _setting("SimpleBackgroundJobs.supervisor_user", "string", "supervisor", CRITICAL,
             "test_for_empty", "The user name for the Supervisor XML-RPC API."),
    _setting("SimpleBackgroundJobs.supervisor_password", "string", "", CRITICAL,
             "test_for_empty",
             "The password for the Supervisor XML-RPC API; never shown and never published.",
             redacted=True, null_allowed=True),
    _setting("SimpleBackgroundJobs.heartbeat_timeout_seconds", "numeric", 60, RECOMMENDED,
             "test_at_least_one",
             "A worker that has not sent a heartbeat for this many seconds is considered dead, "
             "and its running job is retried or failed."),
    _setting("SimpleBackgroundJobs.default_max_attempts", "numeric", 3, RECOMMENDED,
             "test_at_least_one",
             "How many times a job is attempted before it is marked failed, unless the job "
             "sets its own limit."),
)

_BY_NAME: dict[str, SettingDefinition] = {s.name: s for s in SETTINGS}
if len(_BY_NAME) != len(SETTINGS):  # pragma: no cover - a catalogue mistake, caught at import
    raise RuntimeError("a setting is declared twice in the catalogue")


def definition(name: str) -> SettingDefinition:
    """The definition of a setting; KeyError for a name that is not in the catalogue."""
    return _BY_NAME[name]


def by_tab() -> dict[str, list[SettingDefinition]]:
    """Settings grouped by tab, in MISP's tab order, each tab sorted by level then name."""
    grouped: dict[str, list[SettingDefinition]] = {tab: [] for tab in TABS}
    for setting in sorted(SETTINGS, key=lambda s: (s.level, s.name)):
        grouped[setting.tab].append(setting)
    return grouped


def defaults() -> dict[str, Any]:
    """`{name: default}` for every setting: what a service uses until an override arrives."""
    return {s.name: s.default for s in SETTINGS}
