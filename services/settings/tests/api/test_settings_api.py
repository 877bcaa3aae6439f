"""MISP's server settings paths in-process, against a real migrated settings database."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import from_kafka

from ..conftest import Keys


def _h(key: str) -> dict[str, str]:
    return {"Authorization": key, "Accept": "application/json"}


async def test_get_setting_answers_the_native_type_and_allows_dots(
        client: httpx.AsyncClient, keys: Keys) -> None:
    r = await client.get("/servers/getSetting/MISP.max_correlations_per_event.json",
                         headers=_h(keys["site_admin"]))
    assert r.status_code == 200
    body = r.json()
    assert body["name"] == "MISP.max_correlations_per_event" and body["value"] == 5000
    assert body["type"] == "numeric" and body["test"] == "testForNumeric"
    assert body["used_here"] is False  # correlations live outside this product
    live = (await client.get("/servers/getSetting/MISP.live", headers=_h(keys["site_admin"])))
    assert live.json()["value"] is True
    unknown = await client.get("/servers/getSetting/MISP.nope", headers=_h(keys["site_admin"]))
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "Setting MISP.nope is invalid."
    redacted = await client.get("/servers/getSetting/GnuPG.password",
                                headers=_h(keys["site_admin"]))
    assert redacted.status_code == 403
    refused = await client.get("/servers/getSetting/MISP.live", headers=_h(keys["user"]))
    assert refused.status_code == 403


async def test_an_edit_is_saved_published_through_the_outbox_and_shown(
        client: httpx.AsyncClient, keys: Keys, settings_engine: AsyncEngine) -> None:
    r = await client.post("/servers/serverSettingsEdit/Security.password_policy_length",
                          json={"value": "16"}, headers=_h(keys["site_admin"]))
    assert r.status_code == 200, r.text
    assert r.json() == {"saved": True, "success": True, "name": "Field updated",
                        "message": "Field updated", "url": "/servers/serverSettingsEdit"}
    got = await client.get("/servers/getSetting/Security.password_policy_length",
                           headers=_h(keys["site_admin"]))
    assert got.json()["value"] == 16
    shown = await client.get("/servers/serverSettingsEdit/Security.password_policy_length",
                             headers=_h(keys["site_admin"]))
    assert shown.json() == {"Security.password_policy_length": 16}
    async with settings_engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT topic, headers, payload FROM outbox WHERE topic = 'misp.settings.setting.v1'"
        ))).all()
    envelopes = [from_kafka([(h, v.encode()) for h, v in row.headers], bytes(row.payload))
                 for row in rows]
    [change] = [e for e in envelopes if e.data["name"] == "Security.password_policy_length"]
    assert change.type == "misp.settings.setting.changed.v1"
    assert change.data["value"] == 16 and change.data["previous_value"] == 12
    assert change.actor.email and change.actor.user_id


async def test_a_rejected_change_leaves_the_old_value_and_force_saves_a_failing_one(
        client: httpx.AsyncClient, keys: Keys) -> None:
    admin = _h(keys["site_admin"])
    url = "/servers/serverSettingsEdit/MISP.default_event_distribution"
    assert (await client.post(url, json={"value": "2"}, headers=admin)).status_code == 200
    refused = await client.post(url, json={"value": "9"}, headers=admin)
    assert refused.status_code == 403
    assert refused.json()["saved"] is False and "Invalid option" in refused.json()["message"]
    value = (await client.get("/servers/getSetting/MISP.default_event_distribution",
                              headers=admin)).json()["value"]
    assert value == "2"
    wrapped = await client.post(url, json={"Server": {"value": "9", "force": True}},
                                headers=admin)
    assert wrapped.status_code == 200
    for body, status in (({"value": [1]}, 403), ({}, 403), ({"value": "*****"}, 403)):
        r = await client.post(url, json=body, headers=admin)
        assert r.status_code == status and r.json()["saved"] is False
    bad_json = await client.post(url, content=b"{nope", headers=admin)
    assert bad_json.status_code == 405
    wrong_type = await client.post("/servers/serverSettingsEdit/SecureAuth.amount",
                                   json={"value": "lots", "force": True}, headers=admin)
    assert wrong_type.status_code == 403 and "number" in wrong_type.json()["message"]


async def test_a_setting_not_used_here_is_stored_published_and_reported_like_the_rest(
        client: httpx.AsyncClient, keys: Keys, settings_engine: AsyncEngine) -> None:
    admin = _h(keys["site_admin"])
    url = "/servers/serverSettingsEdit/Plugin.ZeroMQ_port"
    refused = await client.post(url, json={"value": "many"}, headers=admin)
    assert refused.status_code == 403
    assert refused.json()["message"] == "This setting has to be a number."
    assert (await client.post(url, json={"value": "5000"}, headers=admin)).status_code == 200
    got = (await client.get("/servers/getSetting/Plugin.ZeroMQ_port", headers=admin)).json()
    assert got["value"] == 5000 and got["used_here"] is False
    assert got["test"] == "testForZMQPortNumber" and got["level"] == 2
    plugin = (await client.get("/servers/serverSettings/Plugin", headers=admin)).json()
    row = next(r for r in plugin["finalSettings"] if r["setting"] == "Plugin.ZeroMQ_port")
    assert row["used_here"] is False and row["subGroup"] == "ZeroMQ"
    assert row["error"] == 1 and row["errorMessage"].startswith("It is recommended")
    assert plugin["tabs"]["Plugin"]["count"] == len(plugin["finalSettings"]) > 100
    async with settings_engine.connect() as conn:
        published = (await conn.execute(text(
            "SELECT count(*) FROM outbox WHERE topic = 'misp.settings.setting.v1'"
            " AND convert_from(payload, 'UTF8') LIKE '%Plugin.ZeroMQ_port%'"))).scalar()
    assert published == 1


async def test_local_organisation_settings_offer_and_check_the_local_organisations(
        client: httpx.AsyncClient, keys: Keys) -> None:
    admin = _h(keys["site_admin"])
    host = (await client.get("/servers/getSetting/MISP.host_org_id", headers=admin)).json()
    assert host["options"] == {"1": "ORGNAME", "5": "other"}
    assert host["test"] == "testLocalOrgStrict"
    url = "/servers/serverSettingsEdit/MISP.host_org_id"
    refused = await client.post(url, json={"value": 77}, headers=admin)
    assert refused.status_code == 403 and refused.json()["message"] == "Invalid organisation"
    none = await client.post(url, json={"value": 0}, headers=admin)
    assert none.json()["message"] == "No organisation selected"
    assert (await client.post(url, json={"value": "5"}, headers=admin)).status_code == 200
    misp_tab = (await client.get("/servers/serverSettings/MISP", headers=admin)).json()
    row = next(r for r in misp_tab["finalSettings"] if r["setting"] == "MISP.host_org_id")
    assert row["value"] == 5 and row["options"]["5"] == "other" and "error" not in row


async def test_cli_only_settings_are_refused_over_http(client: httpx.AsyncClient,
                                                       keys: Keys) -> None:
    r = await client.post("/servers/serverSettingsEdit/MISP.system_setting_db",
                          json={"value": True}, headers=_h(keys["site_admin"]))
    assert r.status_code == 405 and "CLI" in r.json()["message"]


async def test_a_redacted_setting_is_never_in_clear_in_the_database_or_the_outbox(
        client: httpx.AsyncClient, keys: Keys, settings_engine: AsyncEngine) -> None:
    admin = _h(keys["site_admin"])
    secret = "proxy-secret-5f1e"
    r = await client.post("/servers/serverSettingsEdit/Proxy.password", json={"value": secret},
                          headers=admin)
    assert r.status_code == 200
    async with settings_engine.connect() as conn:
        dump = (await conn.execute(text(
            "SELECT (SELECT string_agg(data::text, '') FROM event)"
            " || (SELECT string_agg(encode(payload, 'escape'), '') FROM outbox)"
            " || (SELECT string_agg(coalesce(value::text, ''), '') FROM setting_override)"
        ))).scalar()
    assert secret not in dump
    listing = (await client.get("/servers/serverSettings/Proxy", headers=admin)).json()
    row = next(s for s in listing["finalSettings"] if s["setting"] == "Proxy.password")
    assert row["value"] == "*****" and row["redacted"] is True


async def test_server_settings_lists_every_setting_with_tab_figures(
        client: httpx.AsyncClient, keys: Keys) -> None:
    admin = _h(keys["site_admin"])
    await client.post("/servers/serverSettingsEdit/debug", json={"value": 1}, headers=admin)
    full = await client.get("/servers/serverSettings", headers=admin)
    assert full.status_code == 200
    body = full.json()
    names = {s["setting"] for s in body["finalSettings"]}
    for wanted in ("MISP.baseurl", "MISP.default_attribute_distribution", "MISP.log_auth",
                   "MISP.extended_alert_subject", "Security.password_policy_complexity",
                   "SecureAuth.amount", "GnuPG.email", "Proxy.host", "debug"):
        assert wanted in names
    levels = [s["level"] for s in body["finalSettings"]]
    assert levels == sorted(levels)
    assert body["tabs"]["Misc"]["errors"] == 1 and body["tabs"]["Misc"]["severity"] == 0
    assert "kafka" in body and "writeableDirs" in body and "dbSchemaDiagnostics" in body
    tab = (await client.get("/servers/serverSettings/Security", headers=admin)).json()
    assert {s["tab"] for s in tab["finalSettings"]} == {"Security"}
    download = await client.get("/servers/serverSettings/download", headers=admin)
    assert "MISP.report.json" in download.headers["content-disposition"]
    assert (await client.get("/servers/serverSettings/nope", headers=admin)).status_code == 404


async def test_db_schema_diagnostic_compares_alembic_current_and_head(
        client: httpx.AsyncClient, keys: Keys) -> None:
    body = (await client.get("/servers/dbSchemaDiagnostic",
                             headers=_h(keys["site_admin"]))).json()
    assert body["actual_db_version"] == body["expected_db_version"] == "0006"


async def test_describe_types_has_the_four_keys_pymisp_needs(client: httpx.AsyncClient,
                                                             keys: Keys) -> None:
    r = await client.get("/attributes/describeTypes.json", headers=_h(keys["user"]))
    result = r.json()["result"]
    assert {"types", "categories", "category_type_mappings", "sane_defaults"} <= set(result)
    assert "ip-dst" in result["types"]
    assert result["sane_defaults"]["md5"]["default_category"] == "Payload delivery"
