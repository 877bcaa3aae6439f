"""The settings service through the gateway with PyMISP's own calls (ARCHITECTURE §10), as the
site admin that identity seeded (`.local/admin.authkey`). Every setting changed is restored."""

from __future__ import annotations

import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pymisp import MISPUser, PyMISP

from .support import GATEWAY, admin_key, until

HIDE = "Security.hide_organisation_index_from_users"
# A text setting no service decides by (it drives MISP's web interface): its logged change carries
# a token of this run, so that a row of an earlier run never satisfies the search.
FOOTER = "MISP.footermidleft"
RUN = f"e2e-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def misp() -> PyMISP:
    return PyMISP(GATEWAY, admin_key(), ssl=False, timeout=30)


@pytest.fixture
def restore(misp: PyMISP) -> Iterator[Callable[[str], None]]:
    """Remember settings before a test changes them; force them back afterwards."""
    saved: dict[str, Any] = {}

    def remember(name: str) -> None:
        saved.setdefault(name, misp.get_server_setting(name)["value"])

    yield remember
    for name, value in saved.items():
        misp.set_server_setting(name, value, force=True)


def test_the_constructor_reads_version_user_and_describe_types(misp: PyMISP) -> None:
    assert misp.describe_types["types"] and "ip-dst" in misp.describe_types["types"]
    remote = httpx.get(f"{GATEWAY}/attributes/describeTypes.json",
                       headers={"Authorization": admin_key(), "Accept": "application/json"})
    assert set(remote.json()["result"]) == {"types", "categories", "category_type_mappings",
                                            "sane_defaults"}


def test_server_settings_and_get_server_setting(misp: PyMISP) -> None:
    listing = misp.server_settings()
    names = {s["setting"] for s in listing["finalSettings"]}
    assert {"MISP.baseurl", "MISP.default_event_distribution", "debug"} <= names
    assert set(listing["tabs"]) >= {"MISP", "Encryption", "Proxy", "Security", "Plugin",
                                    "Misc", "SimpleBackgroundJobs"}
    plugin = next(s for s in listing["finalSettings"] if s["setting"] == "Plugin.ZeroMQ_enable")
    assert plugin["used_here"] is False and plugin["tab"] == "Plugin"
    assert isinstance(misp.get_server_setting("MISP.max_correlations_per_event")["value"], int)
    assert isinstance(misp.get_server_setting("MISP.log_auth")["value"], bool)
    unknown = misp.get_server_setting("MISP.no_such_setting")
    assert unknown["errors"][0] == 404


def test_set_server_setting_with_and_without_force(misp: PyMISP,
                                                   restore: Callable[[str], None]) -> None:
    restore("Security.allow_self_registration")
    restore("MISP.default_event_threat_level")
    assert misp.set_server_setting("Security.allow_self_registration", True,
                                   force=True)["message"] == "Field updated"
    assert misp.get_server_setting("Security.allow_self_registration")["value"] is True
    before = misp.get_server_setting("MISP.default_event_threat_level")["value"]
    refused = misp.set_server_setting("MISP.default_event_threat_level", "9")
    assert refused["errors"][0] == 403 and "Invalid option" in refused["errors"][1]["message"]
    assert misp.get_server_setting("MISP.default_event_threat_level")["value"] == before
    forced = misp.set_server_setting("MISP.default_event_threat_level", "9", force=True)
    assert forced["message"] == "Field updated"
    cli_only = misp.set_server_setting("Security.salt", "x" * 40)
    assert cli_only["errors"][0] == 405


def test_db_schema_diagnostic(misp: PyMISP) -> None:
    r = misp.db_schema_diagnostic()
    assert r["actual_db_version"] == r["expected_db_version"]
    assert r["services"]["settings"]["at_head"] is True


def test_blocklist_calls(misp: PyMISP) -> None:
    event_uuid = str(uuid.uuid4())
    added = misp.add_event_blocklist(uuids=[event_uuid], comment="e2e", event_info="bad")
    assert added["result"]["successes"][0] == event_uuid
    entry = next(b for b in misp.event_blocklists(pythonify=True) if b.event_uuid == event_uuid)
    entry.comment = "e2e edited"
    updated = misp.update_event_blocklist(entry)
    assert updated["EventBlocklist"]["comment"] == "e2e edited"
    assert misp.delete_event_blocklist(entry)["success"] is True

    org_uuid = str(uuid.uuid4())
    added = misp.add_organisation_blocklist(uuids=[org_uuid], org_name="Evil Corp e2e")
    assert added["result"]["successes"][0] == org_uuid
    org_entry = next(b for b in misp.organisation_blocklists(pythonify=True)
                     if b.org_uuid == org_uuid)
    org_entry.comment = "edited"
    updated_org = misp.update_organisation_blocklist(org_entry)
    assert updated_org["OrgBlocklist"]["comment"] == "edited"
    assert misp.delete_organisation_blocklist(org_entry)["success"] is True


def test_a_change_takes_effect_in_orgs_and_is_logged_as_server_settings_edit(
        misp: PyMISP, restore: Callable[[str], None]) -> None:
    restore(HIDE)
    restore(FOOTER)
    misp.set_server_setting(HIDE, False, force=True)
    user = MISPUser()
    user.email = f"settings-e2e-{secrets.token_hex(4)}@example.test"
    user.org_id = 1
    user.role_id = 3
    created = misp.add_user(user, pythonify=True)
    assert isinstance(created, MISPUser), created
    headers = {"Authorization": created.authkey, "Accept": "application/json"}

    def index_status() -> int:
        return httpx.get(f"{GATEWAY}/organisations/index", headers=headers).status_code

    try:
        until(lambda: index_status() == 200, "the new user's key at orgs")
        assert misp.set_server_setting(HIDE, True)["message"] == "Field updated"
        until(lambda: index_status() == 403, "orgs to hide the index")
        misp.set_server_setting(HIDE, False)
        until(lambda: index_status() == 200, "orgs to show the index again")

        before = misp.get_server_setting(FOOTER)["value"]
        assert misp.set_server_setting(FOOTER, f"{RUN} footer")["message"] == "Field updated"

        def logged() -> list[dict[str, Any]]:
            rows = misp.search_logs(action="serverSettingsEdit", change=f"%{RUN}%")
            return rows if isinstance(rows, list) else []

        [row] = until(logged, "the serverSettingsEdit log row of this run", timeout_s=30)
        assert row["Log"]["change"] == f"{FOOTER} ({before}) => ({RUN} footer)"
        assert row["Log"]["email"] == misp._current_user.email
        assert (row["Log"]["model"], row["Log"]["title"]) == ("Server", "Server setting changed")
    finally:
        misp.delete_user(created)


def test_the_cli_reads_a_setting_of_the_running_service() -> None:
    out = subprocess.run([sys.executable, "-m", "settings", "get", "MISP.live"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert '"MISP.live"' in out.stdout
