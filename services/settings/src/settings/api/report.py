"""The settings report (`servers/serverSettings`, MISP's "download report" JSON): every setting
with its test result, the problem figures per tab, and the diagnostics of every service."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.settings_catalogue import SETTINGS, definition
from misp_platform.app import run_checks
from misp_platform.config import ServiceSettings
from settings.adapters import diagnostics as diag
from settings.adapters import queries
from settings.api.version import MISP_VERSION, PYMISP_RECOMMENDED_VERSION
from settings.domain.settings import Current, effective_value, final_settings, tab_problems
from settings.settings import SettingsSettings, default_diagnostics_urls

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"


def settings_part(currents: Mapping[str, Current], tab: str | None = None,
                  local_orgs: Mapping[int, str] | None = None) -> dict[str, Any]:
    every = final_settings(currents, SETTINGS, local_orgs=local_orgs)
    tabs, issues = tab_problems(every)
    rows = every if tab is None else [r for r in every if r["tab"] == tab]
    part: dict[str, Any] = {"finalSettings": rows, "tabs": tabs, "issues": issues}
    if tab is not None:
        part["tab"] = tab
    return part


def _urls(settings: ServiceSettings) -> dict[str, str]:
    if isinstance(settings, SettingsSettings):
        return dict(settings.diagnostics_urls)
    return default_diagnostics_urls()


def _timeout(settings: ServiceSettings) -> float:
    return settings.diagnostics_timeout_s if isinstance(settings, SettingsSettings) else 4.0


async def services_diagnostics(settings: ServiceSettings) -> dict[str, dict[str, Any]]:
    return await diag.gather_services(_urls(settings), _timeout(settings))


def schema_status(service_diag: Mapping[str, Any]) -> dict[str, Any]:
    """A service's migrations as dbSchemaDiagnostic shows them."""
    database = (service_diag.get("checks") or {}).get("database") or {}
    return {"reachable": bool(service_diag.get("reachable")) and bool(database.get("ok")),
            "actual_db_version": database.get("alembic_revision"),
            "expected_db_version": database.get("expected_revision"),
            "at_head": database.get("at_head")}


async def diagnostics(app: FastAPI, engine: AsyncEngine,
                      settings: ServiceSettings) -> dict[str, Any]:
    """The Diagnostics tab: each service's own report, Kafka, directories, gpg."""
    async with engine.connect() as conn:
        currents = await queries.all_settings(conn)
    gpg_path = effective_value(definition("GnuPG.binary"),
                               currents.get("GnuPG.binary", Current()))
    services, kafka, own = await asyncio.gather(
        services_diagnostics(settings),
        diag.kafka_status(settings.kafka_bootstrap_servers, _timeout(settings)),
        run_checks(app, app.state.diagnostic_checks))
    proxy_host = effective_value(definition("Proxy.host"), currents.get("Proxy.host", Current()))
    jobs = services.get("jobs", {})
    sessions = (services.get("identity", {}).get("checks") or {}).get("sessions")
    return {
        "version": {"current": MISP_VERSION, "pymisp_recommended": PYMISP_RECOMMENDED_VERSION,
                    "services": {n: d.get("version") for n, d in services.items()}},
        "services": services,
        "dbDiagnostics": {n: ((d.get("checks") or {}).get("database") or {"ok": False})
                          for n, d in services.items()},
        "dbSchemaDiagnostics": {n: schema_status(d) for n, d in services.items()},
        "kafka": kafka,
        "writeableDirs": diag.writable_dirs([settings.state_dir]),
        "gpgStatus": diag.gpg_binary(str(gpg_path or "")),
        "proxyStatus": {"configured": bool(proxy_host), "host": proxy_host or None},
        "workers": (jobs.get("checks") or {}).get("workers",
                                                  {"ok": None, "detail": "not reported"}),
        "mailer": (services.get("mailer", {}).get("checks") or {}),
        # MISP's counter of expired sessions (identity's; servers/purgeSessions queues the purge)
        "sessionCount": (sessions or {}).get("expired"),
        "sessionStatus": sessions or {"ok": None, "detail": "not reported"},
        # Messages a relay parked (Kafka refused them for good): critical until handled.
        "outbox": {n: (d.get("checks") or {}).get("outbox", {"ok": None, "detail": "not reported"})
                   for n, d in services.items()},
        "settings": {name: ({"ok": ok, **detail} if isinstance(detail, dict)
                            else {"ok": ok, "detail": detail})
                     for name, (ok, detail) in own.items()},
    }


async def full_report(app: FastAPI, engine: AsyncEngine,
                      settings: ServiceSettings) -> dict[str, Any]:
    async with engine.connect() as conn:
        currents = await queries.all_settings(conn)
        local_orgs = await queries.local_organisations(conn)
    return {**await diagnostics(app, engine, settings),
            **settings_part(currents, None, local_orgs)}
