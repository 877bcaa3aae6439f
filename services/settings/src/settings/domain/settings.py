"""Server settings: deciding a change, and how MISP's settings page shows each setting.

Pure functions over the catalogue of `misp_contracts.settings_catalogue`, validated by
`settings.domain.validation`; the current override (if any) is handed in by the caller.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from misp_contracts.events.settings import SettingChanged
from misp_contracts.settings_catalogue import (
    CRITICAL,
    DEPRECATED,
    OPTIONAL,
    RECOMMENDED,
    REDACTED_VALUE,
    TABS,
    SettingDefinition,
)
from misp_contracts.settings_catalogue import definition as catalogue_definition
from settings.domain.errors import (
    CliOnlySettingError,
    InvalidSettingValueError,
    NoChangeError,
    RedactedSettingError,
    UnknownSettingError,
)
from settings.domain.patterns import TOO_SLOW, too_slow
from settings.domain.validation import (
    LOCAL_ORG_TESTS,
    NOT_A_SCALAR,
    NOT_SET,
    Lookup,
    diagnose,
    validate,
)

CLI_ONLY = "This setting can only be edited via the CLI."
REDACTED = "This setting is redacted."
NO_CHANGE = "No change."
LEVEL_NAMES = {CRITICAL: "Critical", RECOMMENDED: "Recommended", OPTIONAL: "Optional",
               DEPRECATED: "Deprecated"}
LEVEL_DESCRIPTIONS = {
    CRITICAL: "Critical, your MISP instance requires this to be set.",
    RECOMMENDED: "Recommended, it is highly recommended to set this.",
    OPTIONAL: "Optional, set this if you need it.",
}
# A tab's severity when it has no problem (MISP shows no figure then).
NO_PROBLEM = 5
# MISP's first choice of the local-organisation settings that allow none (testLocalOrg).
NO_ORGANISATION_OPTION = "No organisation selected."


@dataclass(frozen=True)
class Current:
    """A setting's override as the read model holds it (`is_set` False: the default stands)."""

    value: Any = None
    is_set: bool = False
    version: int = 0


def lookup(name: str) -> SettingDefinition:
    try:
        return catalogue_definition(name)
    except KeyError:
        raise UnknownSettingError(f"Setting {name} is invalid.") from None


def effective_value(definition: SettingDefinition, current: Current) -> Any:
    """The value in force: the override, else the catalogue's default."""
    return current.value if current.is_set else definition.default


def shown_value(definition: SettingDefinition, current: Current) -> Any:
    """What MISP clients see: `*****` for a redacted setting that is set."""
    if definition.redacted:
        return REDACTED_VALUE if current.is_set else definition.default
    return effective_value(definition, current)


def _fits_type(definition: SettingDefinition, value: Any) -> bool:
    if value is None:
        return definition.null_allowed
    if definition.type == "boolean":
        return isinstance(value, bool)
    if definition.type == "numeric":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def decide_change(definition: SettingDefinition, current: Current, raw_value: Any, *,
                  force: bool = False, via_cli: bool = False,
                  local_orgs: Collection[int] | None = None) -> SettingChanged:
    """The event a change makes, or the refusal MISP would answer.

    `force` saves a value that fails the setting's test (MISP's checkbox), never one of the
    wrong type: every service reads the setting as its declared type. `local_orgs`: the local
    organisations' ids, which a local-organisation setting is checked against.
    """
    if isinstance(raw_value, list | dict):
        raise InvalidSettingValueError(NOT_A_SCALAR)
    if raw_value == REDACTED_VALUE:
        raise NoChangeError(NO_CHANGE)
    if definition.cli_only and not via_cli:
        raise CliOnlySettingError(CLI_ONLY)
    value, error = validate(definition, raw_value, local_orgs=local_orgs)
    if error is not None and (not force or not _fits_type(definition, value)):
        raise InvalidSettingValueError(error)
    if definition.validation == "test_regex" and error is None and isinstance(value, str) \
            and value and too_slow(value):
        raise InvalidSettingValueError(TOO_SLOW)  # not even with force: it would hang logins
    return SettingChanged(name=definition.name, value=value,
                          previous_value=effective_value(definition, current),
                          forced=error is not None, via_cli=via_cli)


def setting_data(definition: SettingDefinition, current: Current,
                 local_orgs: Mapping[int, str] | None = None) -> dict[str, Any]:
    """MISP's `getSetting` answer: the definition, its name and the current value (with
    `used_here`, this product's addition)."""
    if definition.redacted:
        raise RedactedSettingError(REDACTED)
    data = _definition_fields(definition, local_orgs)
    data["name"] = definition.name
    data["value"] = effective_value(definition, current)
    return data


def dynamic_options(definition: SettingDefinition,
                    local_orgs: Mapping[int, str] | None) -> dict[str, str] | None:
    """The choices MISP computes for a setting (its optionsSource): the local organisations."""
    if local_orgs is None or definition.validation not in LOCAL_ORG_TESTS:
        return None
    options = {} if definition.validation == "test_local_org_strict" else {
        "0": NO_ORGANISATION_OPTION}
    options.update({str(org_id): name for org_id, name in sorted(local_orgs.items())})
    return options


def _definition_fields(definition: SettingDefinition,
                       local_orgs: Mapping[int, str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "level": definition.level,
        "description": definition.description,
        "value": definition.default,
        "test": definition.misp_test,
        "type": definition.type,
    }
    if definition.error_message:
        data["errorMessage"] = definition.error_message
    if definition.null_allowed:
        data["null"] = True
    options = definition.options if definition.options is not None else dynamic_options(
        definition, local_orgs)
    if options is not None:
        data["options"] = dict(options)
    if definition.redacted:
        data["redacted"] = True
    if definition.cli_only:
        data["cli_only"] = True
    data["used_here"] = definition.used_here
    return data


def final_setting(definition: SettingDefinition, current: Current,
                  other: Lookup | None = None,
                  local_orgs: Mapping[int, str] | None = None) -> dict[str, Any]:
    """One `finalSettings` row: value in force (or `*****`), test result and tab (and MISP's
    subGroup for a Plugin setting). As in MISP, only a value that is set is tested; `other`
    gives the values of other settings, for the tests that compare two."""
    row = _definition_fields(definition, local_orgs)
    row = {"setting": definition.name, **row, "value": shown_value(definition, current),
           "tab": definition.tab}
    if definition.tab == "Plugin":
        row["subGroup"] = definition.name.split(".", 1)[-1].split("_", 1)[0]
    if definition.redacted:
        # The value is never here to test: unset is only a problem if unset is not allowed.
        problem = None if (current.is_set or definition.null_allowed) else NOT_SET
    elif current.is_set:
        problem = diagnose(definition, current.value, other)
    else:
        problem = None
    if problem is not None:
        row["error"] = 1
        row["errorMessage"] = problem
    return row


def final_settings(currents: Mapping[str, Current],
                   definitions: Iterable[SettingDefinition],
                   tab: str | None = None,
                   local_orgs: Mapping[int, str] | None = None) -> list[dict[str, Any]]:
    """Every row (of one tab), by level then name; deprecated ones only when set (MISP)."""

    def other(name: str) -> Any:
        try:
            return effective_value(catalogue_definition(name), currents.get(name, Current()))
        except KeyError:
            return None

    rows = []
    for d in sorted(definitions, key=lambda d: (d.level, d.name)):
        if tab is not None and d.tab != tab:
            continue
        current = currents.get(d.name, Current())
        if d.level == DEPRECATED and not current.is_set:
            continue
        rows.append(final_setting(d, current, other, local_orgs))
    return rows


def tab_problems(rows: Iterable[dict[str, Any]]) -> tuple[dict[str, dict[str, int]],
                                                          dict[str, Any]]:
    """Per tab `{count, errors, severity}` (the figure next to each tab; severity 0 is red) and
    the overall issues by level, as MISP's settings page computes them."""
    tabs = {t: {"count": 0, "errors": 0, "severity": NO_PROBLEM} for t in TABS}
    issues: dict[str, Any] = {
        "errors": {str(level): {"value": 0, "description": text}
                   for level, text in LEVEL_DESCRIPTIONS.items()},
        "deprecated": 0,
        "overallHealth": 3,
    }
    for row in rows:
        tab = tabs.setdefault(row["tab"], {"count": 0, "errors": 0, "severity": NO_PROBLEM})
        tab["count"] += 1
        level = int(row["level"])
        if level == DEPRECATED:
            issues["deprecated"] += 1
            continue
        if row.get("error"):
            issues["errors"][str(level)]["value"] += 1
            issues["overallHealth"] = min(issues["overallHealth"], level)
            tab["errors"] += 1
            tab["severity"] = min(tab["severity"], level)
    for tab in tabs.values():
        tab["severity_name"] = LEVEL_NAMES.get(tab["severity"], "")  # type: ignore[assignment]
    return tabs, issues
