"""MISP's server settings paths: `servers/serverSettings[/<tab>]`, `servers/getSetting/{name}`,
`servers/serverSettingsEdit/{name}`, `servers/dbSchemaDiagnostic` and `servers/update` (site
admins only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from misp_contracts.events.settings import SETTING_TOPIC
from misp_contracts.settings_catalogue import TABS
from misp_platform.app import EngineDep, SettingsDep
from misp_platform.auth import SiteAdmin
from misp_platform.consistency import applied_everywhere
from misp_platform.migrations import head_revision
from misp_platform.misp import MispJSONResponse, NotFound, as_misp, read_body, success
from settings.adapters import queries
from settings.api import report
from settings.api.report import MIGRATIONS_DIR
from settings.domain.settings import lookup, setting_data, shown_value
from settings.domain.validation import LOCAL_ORG_TESTS
from settings.handlers.settings import change_setting

router = APIRouter(tags=["servers"])

EDIT_URL = "/servers/serverSettingsEdit"
FIELD_UPDATED = "Field updated"
_TAB_BY_LOWER = {t.lower(): t for t in TABS}


@router.get("/servers/serverSettings")
async def server_settings(_admin: SiteAdmin, request: Request, engine: EngineDep,
                          settings: SettingsDep) -> dict[str, Any]:
    """The whole report: every setting with its test result, the tab figures, diagnostics."""
    return await report.full_report(request.app, engine, settings)


@router.get("/servers/serverSettings/{tab}")
async def server_settings_tab(tab: str, _admin: SiteAdmin, request: Request, engine: EngineDep,
                              settings: SettingsDep) -> Response:
    key = tab.lower()
    if key == "download":
        body = await report.full_report(request.app, engine, settings)
        return MispJSONResponse(body, headers={
            "Content-Disposition": 'attachment; filename="MISP.report.json"'})
    if key == "diagnostics":
        return MispJSONResponse(await report.diagnostics(request.app, engine, settings))
    if key not in _TAB_BY_LOWER:
        raise NotFound("Invalid tab.")
    async with engine.connect() as conn:
        currents = await queries.all_settings(conn)
        local_orgs = await queries.local_organisations(conn)
    return MispJSONResponse(report.settings_part(currents, _TAB_BY_LOWER[key], local_orgs))


@router.get("/servers/getSetting/{name}")
async def get_setting(name: str, _admin: SiteAdmin, engine: EngineDep) -> dict[str, Any]:
    """404 for an unknown setting, 403 for a redacted one (the platform's domain error handler
    answers them)."""
    definition = lookup(name)
    async with engine.connect() as conn:
        current = await queries.current_setting(conn, name)
        local_orgs = (await queries.local_organisations(conn)
                      if definition.validation in LOCAL_ORG_TESTS else None)
    return setting_data(definition, current, local_orgs)


@router.get("/servers/serverSettingsEdit/{name}")
async def show_setting(name: str, _admin: SiteAdmin, engine: EngineDep) -> dict[str, Any]:
    """MISP's REST GET on the edit URL: `{"<name>": <value>}` (404 for an unknown setting)."""
    definition = lookup(name)
    async with engine.connect() as conn:
        current = await queries.current_setting(conn, name)
    return {name: shown_value(definition, current)}


def _force(body: dict[str, Any]) -> bool:
    force = body.get("force", False)
    if isinstance(force, str):
        return force.strip().lower() in ("1", "true", "on", "yes")
    return bool(force)


@router.post("/servers/serverSettingsEdit/{name}")
async def edit_setting(name: str, admin: SiteAdmin, request: Request,
                       engine: EngineDep) -> dict[str, Any]:
    body = await read_body(request, "Server")
    # A refused change leaves the old value in force; the failure envelope's message says why.
    with as_misp(request, "serverSettingsEdit", "Server", url=EDIT_URL):
        lookup(name)
        await change_setting(engine, name=name, value=body.get("value", []), force=_force(body),
                             actor=admin.actor(), correlation_id=admin.request_id)
    # Identity, orgs, the audit and the mailer decide by the new value from the next call on.
    await applied_everywhere(request.app, SETTING_TOPIC)
    return success("serverSettingsEdit", "Server", EDIT_URL, message=FIELD_UPDATED)


@router.get("/servers/dbSchemaDiagnostic")
async def db_schema_diagnostic(_admin: SiteAdmin, request: Request, engine: EngineDep,
                               settings: SettingsDep) -> dict[str, Any]:
    """MISP's shape; `actual_db_version`/`expected_db_version` are this service's alembic
    revisions, and `services` holds every service's (from its own diagnostics)."""
    async with engine.connect() as conn:
        actual = await queries.alembic_revision(conn)
    expected = head_revision(MIGRATIONS_DIR)
    services = await report.services_diagnostics(settings)
    return {
        "dbSchemaDiagnostics": {},
        "checked_table_column": [],
        "diagnostic": {},
        "diagnostic_index": {},
        "expected_db_version": expected,
        "actual_db_version": actual,
        "db_version_ok": actual == expected,
        "error": "" if actual == expected else "The database is not at the newest migration.",
        "remainingLockTime": 0,
        "update_locked": False,
        "update_fail_number_reached": False,
        "services": {name: report.schema_status(diag) for name, diag in services.items()},
    }



UPDATE_INPUT = "update"
UP_TO_DATE = ("Already up to date. This product updates with its releases; each service's "
              "schema updates run with its migrations (see servers/dbSchemaDiagnostic).")


@router.post("/servers/update")
async def update(_admin: SiteAdmin) -> dict[str, Any]:
    """MISP pulls its git branch here and lists each command run; this product has nothing to
    pull, so the answer is the one an up-to-date MISP gives, in MISP's shape."""
    return {"results": [{"input": UPDATE_INPUT, "output": [UP_TO_DATE], "status": 0}]}
