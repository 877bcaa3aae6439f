"""The settings' background job (`python -m settings worker <queue>`): `settings_diagnostics`
gathers the diagnostics (every service's own report, Kafka, directories, gpg), stores the report
in `diagnostics_report` and answers with its summary."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.settings_catalogue import definition
from misp_platform.config import ServiceSettings
from misp_platform.worker import JobContext, JobHandler
from settings.adapters import diagnostics as diag
from settings.adapters import queries, store
from settings.domain.settings import Current, effective_value
from settings.settings import SettingsSettings


def problems_of(report: Mapping[str, Any]) -> list[str]:
    """What needs an operator's look, one short line each."""
    problems: list[str] = []
    for name, service in sorted(report["services"].items()):
        if not service.get("reachable"):
            problems.append(f"{name} unreachable ({service.get('error', '')})")
            continue
        database = (service.get("checks") or {}).get("database") or {}
        if not database.get("ok"):
            problems.append(f"{name} database not ok")
        elif database.get("at_head") is False:
            problems.append(f"{name} schema at {database.get('alembic_revision')}, "
                            f"expected {database.get('expected_revision')}")
    kafka = report["kafka"]
    if not kafka.get("reachable"):
        problems.append(f"Kafka unreachable ({kafka.get('error', '')})")
    elif kafka.get("topics_missing"):
        problems.append(f"{len(kafka['topics_missing'])} Kafka topic(s) missing")
    problems += [f"{path} not writeable" for path, entry in report["writeableDirs"].items()
                 if not entry.get("writeable")]
    if not report["gpgStatus"].get("present"):
        problems.append(f"gpg binary {report['gpgStatus'].get('binary')!r} not found")
    return problems


def summary_of(report: Mapping[str, Any], problems: list[str]) -> str:
    services = report["services"]
    reachable = sum(1 for s in services.values() if s.get("reachable"))
    head = f"Diagnostics: {reachable}/{len(services)} services reachable"
    if not problems:
        return f"{head}, no problems found."
    return f"{head}, {len(problems)} problem(s): " + "; ".join(problems)


def job_handlers(settings: ServiceSettings) -> Mapping[str, JobHandler]:
    assert isinstance(settings, SettingsSettings)
    s = settings

    async def settings_diagnostics(conn: AsyncConnection, ctx: JobContext) -> str:
        currents = await queries.all_settings(conn)
        gpg_path = effective_value(definition("GnuPG.binary"),
                                   currents.get("GnuPG.binary", Current()))
        services, kafka = await asyncio.gather(
            diag.gather_services(dict(s.diagnostics_urls), s.diagnostics_timeout_s),
            diag.kafka_status(s.kafka_bootstrap_servers, s.diagnostics_timeout_s))
        await ctx.progress(80, "services and Kafka asked")
        report: dict[str, Any] = {
            "services": services, "kafka": kafka,
            "writeableDirs": diag.writable_dirs([s.state_dir]),
            "gpgStatus": diag.gpg_binary(str(gpg_path or "")),
        }
        problems = problems_of(report)
        summary = summary_of(report, problems)
        await store.insert_diagnostics_report(
            conn, job_id=ctx.job.job_id, ok=not problems, summary=summary,
            report={**report, "problems": problems})
        return summary

    return {"settings_diagnostics": settings_diagnostics}
