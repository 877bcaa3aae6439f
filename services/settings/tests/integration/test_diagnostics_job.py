"""The settings' job run by its worker: `settings_diagnostics` gathers the diagnostics from the
real Kafka and the configured services, stores the report and answers with its summary."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.topics import CATALOGUE
from misp_platform.testing import run_job
from settings.adapters.tables import diagnostics_report
from settings.handlers.jobs import job_handlers, problems_of, summary_of
from settings.settings import SettingsSettings


async def test_a_diagnostics_job_stores_the_report_and_summarises_its_problems(
        service_settings: SettingsSettings, settings_engine: AsyncEngine,
        tmp_path: Path) -> None:
    settings = service_settings.model_copy(update={
        "state_dir": str(tmp_path), "diagnostics_timeout_s": 10.0,
        "diagnostics_urls": {"nowhere": "http://127.0.0.1:9/_svc/nowhere/diagnostics"}})

    done = await run_job(settings_engine, service="settings", queue="prio",
                         job_type="settings_diagnostics", handlers=job_handlers(settings))

    assert done["outcome"] == "succeeded", done
    assert done["message"].startswith("Diagnostics: 0/1 services reachable, ")
    assert "nowhere unreachable (ConnectError" in done["message"]
    async with settings_engine.connect() as conn:
        row = (await conn.execute(select(diagnostics_report))).one()
        mark = (await conn.execute(text("SELECT job_id, message FROM job_run"))).one()
    assert (row.job_id, row.summary, row.ok) == (done["job_id"], done["message"], False)
    assert row.report["kafka"]["reachable"] is True, row.report["kafka"]
    assert row.report["writeableDirs"] == {str(tmp_path): {"exists": True, "writeable": True}}
    assert tuple(mark) == (done["job_id"], done["message"])


def test_a_healthy_report_has_no_problems() -> None:
    report = {
        "services": {"orgs": {"reachable": True, "checks": {"database": {
            "ok": True, "at_head": True}}}},
        "kafka": {"reachable": True, "topics_missing": []},
        "writeableDirs": {".local": {"exists": True, "writeable": True}},
        "gpgStatus": {"binary": "gpg", "present": True},
    }
    assert problems_of(report) == []
    assert summary_of(report, []) == "Diagnostics: 1/1 services reachable, no problems found."
    behind = {**report, "kafka": {"reachable": True, "topics_missing": [CATALOGUE[0].name]},
              "services": {"orgs": {"reachable": True, "checks": {"database": {
                  "ok": True, "at_head": False, "alembic_revision": "0002",
                  "expected_revision": "0003"}}}}}
    assert problems_of(behind) == ["orgs schema at 0002, expected 0003",
                                   "1 Kafka topic(s) missing"]
