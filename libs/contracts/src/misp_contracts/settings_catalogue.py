"""The settings catalogue: every server setting's definition and default, as data.

Every service reads its defaults from here, so it knows them from its first start; the settings
service stores overrides, validates each change by the test a setting names (`validation`; the
functions are the settings service's) and publishes it (ARCHITECTURE §6). The names, types,
defaults, levels, options and tests are those of MISP's `Server::generateServerSettings`, for
every tab, so that `/servers/getSetting` and `/servers/serverSettingsEdit` look the same to MISP
clients; the descriptions are this product's own.

The definitions live in `settings_catalogue.json` beside this module (one setting a line), loaded
once at import. A setting that drives a feature living outside this product (events, attributes,
correlations, feeds, sync, plugins, MISP's web interface and runtime...) says so with
`used_here: false`; it is stored, validated, reported and published like every other.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

Tab = Literal["MISP", "Encryption", "Proxy", "Security", "Plugin", "Misc",
              "SimpleBackgroundJobs"]
SettingType = Literal["string", "numeric", "boolean"]
Validation = Literal[
    "test_for_empty", "test_bool", "test_numeric", "test_positive_int", "test_at_least_one",
    "test_port", "test_passwordlength", "test_regex", "test_options", "test_uuid", "test_url",
    "test_baseurl", "test_email", "test_path", "test_salt", "test_debug", "test_live",
    "test_disable_email",
    # MISP's other tests (issue 17): see the settings service's validation module for what each
    # checks here where MISP looks at its own files, directories or database.
    "test_none", "test_whole_numeric", "test_bool_false", "test_bool_true", "test_language",
    "test_local_org", "test_local_org_strict", "test_tag_collection", "test_correlation_engine",
    "test_bin_exec", "test_ca_bundle", "test_writable_dir", "test_gpg_binary",
    "test_custom_image", "test_style_file", "test_terms_file", "test_password_reset_text",
    "test_session_defaults", "test_cookie_timeout", "test_paranoid_skip_db", "test_disable_cache",
    "test_debug_admin", "test_zmq_port", "test_rpz_behaviour", "test_rpz_duration",
    "test_rpz_serial", "test_encryption_key",
]

# MISP's tabs (Security holds Security, SecureAuth, Session and LinOTPAuth; Encryption holds
# GnuPG and SMIME), and Misc for the top-level `debug` and `site_admin_debug`.
TABS: tuple[str, ...] = ("MISP", "Encryption", "Proxy", "Security", "Plugin", "Misc",
                         "SimpleBackgroundJobs")

# Levels, as MISP shows them: deprecated settings are hidden unless they are set.
CRITICAL, RECOMMENDED, OPTIONAL, DEPRECATED = 0, 1, 2, 3

# MISP's name of each test, for the `test` field of MISP's REST answers (None: MISP names no
# test for the setting, or an inline one).
MISP_TEST_NAMES: dict[str, str | None] = {
    "test_for_empty": "testForEmpty", "test_bool": "testBool", "test_numeric": "testForNumeric",
    "test_positive_int": "testForPositiveInteger", "test_at_least_one": "testForPositiveInteger",
    "test_port": "testForPortNumber", "test_passwordlength": "testPasswordLength",
    "test_regex": "testPasswordRegex", "test_options": "testForEmpty", "test_uuid": "testUuid",
    "test_url": "testURL", "test_baseurl": "testBaseURL", "test_email": "testForEmpty",
    "test_path": "testForPath", "test_salt": "testSalt", "test_debug": "testDebug",
    "test_live": "testLive", "test_disable_email": "testDisableEmail",
    "test_none": None, "test_whole_numeric": "testForNumeric", "test_bool_false": "testBoolFalse",
    "test_bool_true": "testBoolTrue", "test_language": "testLanguage",
    "test_local_org": "testLocalOrg", "test_local_org_strict": "testLocalOrgStrict",
    "test_tag_collection": "testTagCollections",
    "test_correlation_engine": "testForCorrelationEngine", "test_bin_exec": "testForBinExec",
    "test_ca_bundle": "testForCABundle", "test_writable_dir": "testForWritableDir",
    "test_gpg_binary": "testForGPGBinary", "test_custom_image": "testForCustomImage",
    "test_style_file": "testForStyleFile", "test_terms_file": "testForTermsFile",
    "test_password_reset_text": "testPasswordResetText",
    "test_session_defaults": "testForSessionDefaults",
    "test_cookie_timeout": "testForCookieTimeout", "test_paranoid_skip_db": "testParanoidSkipDb",
    "test_disable_cache": "testDisableCache", "test_debug_admin": "testDebugAdmin",
    "test_zmq_port": "testForZMQPortNumber", "test_rpz_behaviour": "testForRPZBehaviour",
    "test_rpz_duration": "testForRPZDuration", "test_rpz_serial": "testForRPZSerial",
    "test_encryption_key": None,
}

# MISP's default password complexity: upper + lower + (digit or symbol), or at least 16 characters.
DEFAULT_PASSWORD_COMPLEXITY = r"/^((?=.*\d)|(?=.*\W+))(?![\n])(?=.*[A-Z])(?=.*[a-z]).*$|.{16,}/"

REDACTED_VALUE = "*****"

CATALOGUE_FILE = "settings_catalogue.json"


class SettingDefinition(BaseModel):
    """One server setting as MISP describes it (level, type, default, test, options...)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str  # dotted, e.g. "MISP.baseurl"; "debug" and "site_admin_debug" are top-level
    tab: Tab
    type: SettingType
    default: JsonValue = None
    level: int = Field(ge=CRITICAL, le=DEPRECATED)
    description: str
    validation: Validation
    # MISP's errorMessage: part of the definition MISP clients read, and what the report says
    # of a boolean setting whose value MISP advises against (testBoolFalse, testBoolTrue).
    error_message: str = ""
    options: dict[str, str] | None = None  # value -> label
    redacted: bool = False  # never shown (`*****`), never published in clear
    cli_only: bool = False  # cannot be changed through the API (MISP answers 405)
    null_allowed: bool = False  # unset (null or empty) is a valid state
    # False: the setting drives a feature that lives outside this product (events, sync,
    # plugins, MISP's web interface...); it is stored, validated and published all the same.
    used_here: bool = True

    @property
    def misp_test(self) -> str | None:
        """The name MISP gives this setting's test (`testForEmpty`, `testBool`, ...)."""
        return MISP_TEST_NAMES[self.validation]


def _load() -> tuple[SettingDefinition, ...]:
    data = files(__package__).joinpath(CATALOGUE_FILE).read_bytes()
    return tuple(TypeAdapter(list[SettingDefinition]).validate_json(data))


SETTINGS: tuple[SettingDefinition, ...] = _load()

_BY_NAME: dict[str, SettingDefinition] = {s.name: s for s in SETTINGS}
if len(_BY_NAME) != len(SETTINGS):  # pragma: no cover - a catalogue mistake, caught at import
    raise RuntimeError("a setting is declared twice in the catalogue")


def definition(name: str) -> SettingDefinition:
    """The definition of a setting; KeyError for a name that is not in the catalogue."""
    return _BY_NAME[name]


@cache
def _grouped() -> dict[str, tuple[SettingDefinition, ...]]:
    grouped: dict[str, list[SettingDefinition]] = {tab: [] for tab in TABS}
    for setting in sorted(SETTINGS, key=lambda s: (s.level, s.name)):
        grouped[setting.tab].append(setting)
    return {tab: tuple(settings) for tab, settings in grouped.items()}


def by_tab() -> dict[str, list[SettingDefinition]]:
    """Settings grouped by tab, in MISP's tab order, each tab sorted by level then name."""
    return {tab: list(settings) for tab, settings in _grouped().items()}


def defaults() -> dict[str, Any]:
    """`{name: default}` for every setting: what a service uses until an override arrives."""
    return {s.name: s.default for s in SETTINGS}
