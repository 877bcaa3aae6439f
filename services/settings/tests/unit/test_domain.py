"""Domain rules of the settings service, without I/O."""

from __future__ import annotations

import pytest

from misp_contracts.events.settings import SettingChanged
from misp_contracts.settings_catalogue import SETTINGS, definition
from settings.domain.errors import (
    CliOnlySettingError,
    InvalidRuleError,
    InvalidSettingValueError,
    NoChangeError,
    RedactedSettingError,
)
from settings.domain.rules import (
    RegexpRule,
    allowed_by,
    apply_rules,
    compile_rule,
    expand_replacement,
    normalise_uuid,
    parse_uuids,
)
from settings.domain.seeds import SEEDED_REGEXPS
from settings.domain.settings import (
    Current,
    decide_change,
    final_settings,
    setting_data,
    tab_problems,
)


def test_a_valid_value_is_cast_and_carries_the_previous_value() -> None:
    d = definition("Security.password_policy_length")
    event = decide_change(d, Current(), " 14 ")
    assert event.value == 14 and event.previous_value == 12 and not event.forced


def test_a_failing_value_is_refused_unless_forced_but_a_wrong_type_never_is() -> None:
    d = definition("MISP.default_event_distribution")
    with pytest.raises(InvalidSettingValueError, match="Invalid option"):
        decide_change(d, Current(), "7")
    assert decide_change(d, Current(), "7", force=True).forced is True
    with pytest.raises(InvalidSettingValueError, match="number"):
        decide_change(definition("SecureAuth.amount"), Current(), "many", force=True)


def test_non_scalars_stars_and_cli_only_settings_are_refused() -> None:
    with pytest.raises(InvalidSettingValueError, match="Expected"):
        decide_change(definition("MISP.live"), Current(), [True])
    with pytest.raises(NoChangeError):
        decide_change(definition("GnuPG.password"), Current(), "*****")
    with pytest.raises(CliOnlySettingError):
        decide_change(definition("Security.salt"), Current(), "x" * 40)
    event = decide_change(definition("Security.salt"), Current(), "y" * 40, via_cli=True)
    assert event.via_cli is True


def test_a_redacted_value_never_enters_the_event() -> None:
    event = decide_change(definition("Proxy.password"), Current(), "hunter2-secret")
    assert isinstance(event, SettingChanged)
    assert event.value == "*****" and "hunter2" not in event.model_dump_json()
    with pytest.raises(RedactedSettingError):
        setting_data(definition("Proxy.password"), Current())


def test_problems_are_counted_per_tab_with_the_most_severe_level() -> None:
    currents = {"debug": Current(value=2, is_set=True, version=1),
                "MISP.email": Current(value="not-an-address", is_set=True, version=1)}
    rows = final_settings(currents, SETTINGS)
    tabs, issues = tab_problems(rows)
    assert tabs["Misc"]["errors"] == 1 and tabs["Misc"]["severity"] == 0
    assert tabs["MISP"]["errors"] >= 1 and tabs["MISP"]["severity"] == 0
    assert tabs["Proxy"]["errors"] == 0
    assert issues["overallHealth"] == 0
    debug = next(r for r in rows if r["setting"] == "debug")
    assert debug["error"] == 1 and debug["value"] == 2


def test_answers_carry_used_here_misp_s_test_name_and_plugin_subgroups() -> None:
    ours = setting_data(definition("MISP.log_auth"), Current())
    assert ours["used_here"] is True and ours["test"] == "testBool"
    zmq = setting_data(definition("Plugin.ZeroMQ_enable"), Current(value=True, is_set=True))
    assert zmq["used_here"] is False and zmq["value"] is True
    assert setting_data(definition("MISP.redis_serializer"), Current())["test"] is None
    rows = {r["setting"]: r for r in final_settings({}, SETTINGS, tab="Plugin")}
    assert rows["Plugin.ZeroMQ_enable"]["subGroup"] == "ZeroMQ"
    assert rows["Plugin.Enrichment_services_url"]["subGroup"] == "Enrichment"
    assert {r["used_here"] for r in rows.values()} == {False}
    assert "subGroup" not in final_settings({}, SETTINGS, tab="MISP")[0]


def test_as_in_misp_only_a_value_that_is_set_is_tested() -> None:
    # MISP.disable_cached_exports defaults to true, which MISP's test warns about once set.
    rows = {r["setting"]: r for r in final_settings({}, SETTINGS)}
    assert "error" not in rows["MISP.disable_cached_exports"]
    assert not [r["setting"] for r in rows.values() if r.get("error")]
    set_rows = {r["setting"]: r for r in final_settings(
        {"MISP.disable_cached_exports": Current(value=True, is_set=True, version=1),
         "Session.cookieTimeout": Current(value=30, is_set=True, version=1)}, SETTINGS)}
    assert set_rows["MISP.disable_cached_exports"]["errorMessage"] == (
        "Export caches are disabled.")
    # compared with Session.timeout's default (60 minutes)
    assert set_rows["Session.cookieTimeout"]["error"] == 1


def test_local_organisation_settings_offer_and_accept_the_local_organisations() -> None:
    orgs = {1: "ORGNAME", 4: "CIRCL"}
    host = setting_data(definition("MISP.host_org_id"), Current(), orgs)
    assert host["options"] == {"1": "ORGNAME", "4": "CIRCL"}
    anonymise = setting_data(definition("Plugin.Sightings_anonymise_as"), Current(), orgs)
    assert anonymise["options"] == {"0": "No organisation selected.", "1": "ORGNAME",
                                    "4": "CIRCL"}
    assert "options" not in setting_data(definition("MISP.host_org_id"), Current())
    assert decide_change(definition("MISP.host_org_id"), Current(), "4",
                         local_orgs=set(orgs)).value == 4
    with pytest.raises(InvalidSettingValueError, match="Invalid organisation"):
        decide_change(definition("MISP.host_org_id"), Current(), "5", local_orgs=set(orgs))


def test_a_catastrophic_backtracking_pattern_finishes() -> None:
    """RE2 matches in linear time; a backtracking engine would not finish within the run
    (pytest's timeout fails the test): no time is measured here."""
    rule = RegexpRule(1, "/^(a+)+$/", "")
    outcome = apply_rules("a" * 50_000 + "!", [rule])
    assert outcome.blocked is False


def test_patterns_re2_cannot_run_are_refused_with_the_reason() -> None:
    for bad in ("/(a)\\1/", "/x(?=y)/", "/abc", "abc/", "/a/z", ""):
        with pytest.raises(InvalidRuleError):
            compile_rule(bad)


def test_every_seeded_misp_rule_compiles_and_rewrites_windows_paths() -> None:
    rules = [RegexpRule(i, r, p) for i, r, p in SEEDED_REGEXPS]
    assert len(rules) == 29
    for rule in rules:
        compile_rule(rule.regexp)
    out = apply_rules("C:\\Users\\bob\\AppData\\Roaming\\evil.exe", rules)
    assert out.value == "%APPDATA%\\evil.exe" and not out.blocked
    blocked = apply_rules("%APPDATA%\\Microsoft\\UProof\\x.dic", rules)
    assert blocked.blocked and blocked.blocked_by == 28


def test_php_replacement_groups_and_escaped_backslashes() -> None:
    match = compile_rule("/(\\w+)@(\\w+)/").regex.search("me@host")
    assert expand_replacement("$2\\\\${1}-\\1", match) == "host\\me-me"


def test_allowlist_and_uuid_parsing() -> None:
    assert allowed_by("8.8.8.8", ["/^10\\./", "/8\\.8\\.8\\.8/"]) == "/8\\.8\\.8\\.8/"
    assert allowed_by("1.1.1.1", ["/8\\.8/"]) is None
    u = "5C6D2DD6-4DA0-4B2B-9A45-0C1E6F0B2A11"
    assert parse_uuids(f"{u}\nshort\n") == [u]
    assert normalise_uuid(u) == u.lower() and normalise_uuid("z" * 36) is None


def test_a_complexity_pattern_that_backtracks_catastrophically_is_refused_even_with_force() -> None:
    d = definition("Security.password_policy_complexity")
    for force in (False, True):
        with pytest.raises(InvalidSettingValueError, match="too long to evaluate"):
            decide_change(d, Current(), "/^(a|aa)+$/", force=force)
    accepted = decide_change(d, Current(), r"/^(?=.*\d)(?=.*[A-Z])(?=.*[a-z]).{12,}$/")
    assert accepted.value.startswith("/^(?=")
